package dev.kiln.api;

/**
 * Service properties by which Kiln selects among providers of the same interface, the way vLLM keys its
 * registries of attention backends, quantization methods and proposers by name.
 *
 * <p>Every Kiln service registers {@link #NAME}; services bound to one kind of device also register
 * {@link #BACKEND}. Consumers select with an LDAP filter such as {@code (&(kiln.name=paged)(kiln.backend=cpu))}
 * and, among equal names, take the highest {@code service.ranking}.
 */
public final class KilnProperties {
    /** Service property naming the implementation, e.g. {@code mtp}, {@code paged}, {@code qwen2}. */
    public static final String NAME = "kiln.name";
    /** Service property naming the compute backend an implementation runs on, e.g. {@code cpu}, {@code cuda}. */
    public static final String BACKEND = "kiln.backend";
    /** Config Admin PID of the inference engine; its properties name the services the engine uses. */
    public static final String ENGINE_PID = "dev.kiln.engine";

    private KilnProperties() {}
}
