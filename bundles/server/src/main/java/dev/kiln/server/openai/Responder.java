package dev.kiln.server.openai;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonObject;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.io.PrintWriter;

/**
 * Writes an endpoint's answer: one JSON body, or server-sent events ({@code data: {...}\n\n}, ended by
 * {@code data: [DONE]\n\n}) flushed one by one. A failed write means the client is gone: the IOException
 * propagates so the request's engine work is cancelled.
 */
final class Responder {
    static final Gson GSON = new GsonBuilder().disableHtmlEscaping().serializeNulls().create();

    private final HttpServletResponse response;
    private PrintWriter stream;

    Responder(HttpServletResponse response) {
        this.response = response;
    }

    boolean streaming() {
        return stream != null;
    }

    void json(int status, JsonObject body) throws IOException {
        response.setStatus(status);
        response.setContentType("application/json");
        response.setCharacterEncoding("UTF-8");
        response.getWriter().write(GSON.toJson(body));
    }

    void startStream() throws IOException {
        response.setStatus(200);
        response.setContentType("text/event-stream");
        response.setCharacterEncoding("UTF-8");
        response.setHeader("Cache-Control", "no-cache");
        response.setHeader("X-Accel-Buffering", "no");
        stream = response.getWriter();
        response.flushBuffer();
    }

    void event(JsonObject data) throws IOException {
        stream.write("data: ");
        stream.write(GSON.toJson(data));
        stream.write("\n\n");
        flush();
    }

    void endStream() throws IOException {
        stream.write("data: [DONE]\n\n");
        flush();
    }

    private void flush() throws IOException {
        stream.flush();
        if (stream.checkError()) throw new IOException("client disconnected");
        response.flushBuffer();
    }
}
