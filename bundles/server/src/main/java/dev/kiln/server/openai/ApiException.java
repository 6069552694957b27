package dev.kiln.server.openai;

/**
 * A request the API refuses, reported to the client as OpenAI's error body
 * {@code {"error": {"message", "type", "param", "code"}}} with the given HTTP status.
 */
final class ApiException extends RuntimeException {
    final int status;
    final String type;
    final String param;
    final String code;

    ApiException(int status, String type, String message, String param, String code) {
        super(message);
        this.status = status;
        this.type = type;
        this.param = param;
        this.code = code;
    }

    /** 400: the request is malformed or a parameter is invalid. */
    static ApiException invalid(String param, String message) {
        return new ApiException(400, "invalid_request_error", message, param, null);
    }

    static ApiException notFound(String message) {
        return new ApiException(404, "invalid_request_error", message, null, "not_found");
    }

    static ApiException modelNotFound(String model) {
        return new ApiException(404, "invalid_request_error", "The model '" + model + "' does not exist", "model", "model_not_found");
    }

    static ApiException methodNotAllowed(String method, String path) {
        return new ApiException(405, "invalid_request_error", "Method " + method + " is not allowed on " + path, null, "method_not_allowed");
    }

    static ApiException tooLarge(long limit) {
        return new ApiException(413, "invalid_request_error", "Request body exceeds the limit of " + limit + " bytes", null, "request_too_large");
    }

    static ApiException overloaded(String message) {
        return new ApiException(429, "rate_limit_error", message, null, "engine_overloaded");
    }

    static ApiException unavailable(String message) {
        return new ApiException(503, "service_unavailable", message, null, "model_not_loaded");
    }
}
