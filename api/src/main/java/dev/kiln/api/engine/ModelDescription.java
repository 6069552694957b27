package dev.kiln.api.engine;

/**
 * The model an engine serves, as reported to clients and operators.
 *
 * @param id            the name clients use in the {@code model} field
 * @param architecture  {@code qwen2}, {@code deepseek_v3}, ...
 * @param location      the folder it was loaded from
 * @param weightFormat  {@code bf16}, {@code weight_only_int8}, ...
 * @param weightBytes   bytes of weights held
 * @param contextLength the longest sequence (prompt + output) served
 */
public record ModelDescription(String id, String architecture, String location, String weightFormat,
                               long weightBytes, int contextLength) {}
