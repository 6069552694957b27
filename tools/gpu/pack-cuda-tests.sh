#!/usr/bin/env bash
# Packs what the CUDA backend's GPU tests, kernel checks and decode benchmark need on a GPU machine that has no Java
# or Maven: a jlink'd Java runtime (xz), the backend's classes and test classes, their dependency jars, the JUnit
# console launcher, and run.sh. Build first (./mvnw install, or -pl bundles/backend-cuda -am).
#   tools/gpu/pack-cuda-tests.sh OUT_DIR
# On the GPU machine, from the repository root (the fixtures and tools/ travel with the tree):
#   bash OUT_DIR/run.sh [--benchmark] [JUnit console options, e.g. --select-class dev.kiln.backend.cuda.CudaBackendTest]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:?usage: pack-cuda-tests.sh OUT_DIR}
. "$root/distribution/src/main/dist/bin/java-home.sh"
jdk=$(kiln_find_jdk jlink) || { echo "pack-cuda-tests: needs a JDK 25 with jlink" >&2; exit 1; }
module="$root/bundles/backend-cuda"
[ -d "$module/target/test-classes" ] || { echo "pack-cuda-tests: build bundles/backend-cuda first" >&2; exit 1; }
rm -rf "$out" && mkdir -p "$out/lib"
out=$(cd "$out" && pwd) # the runtime is archived from another directory
cp -r "$module/target/classes" "$out/classes"
cp -r "$module/target/test-classes" "$out/test-classes"
(cd "$root" && JAVA_HOME=$jdk ./mvnw -q -o dependency:copy-dependencies -pl bundles/backend-cuda -DincludeScope=test \
    -DexcludeGroupIds=org.junit.jupiter,org.junit.platform -DoutputDirectory="$out/lib")
console=$(ls ~/.m2/repository/org/junit/platform/junit-platform-console-standalone/*/junit-platform-console-standalone-*.jar \
    2>/dev/null | sort -V | tail -1)
[ -n "$console" ] || { echo "pack-cuda-tests: junit-platform-console-standalone is not in the local Maven repository" >&2; exit 1; }
cp "$console" "$out/junit-console.jar"
# The whole server needs java.desktop (Jinjava's java.beans), java.management.rmi and java.rmi (Jetty's javax.rmi.ssl);
# the tests need less, but one runtime serves both. Uncompressed modules then xz: ~20 MB instead of ~37 with zip-9.
tmp=$(mktemp -d)
"$jdk/bin/jlink" --add-modules java.base,java.logging,java.management,java.management.rmi,java.rmi,java.naming,java.net.http,java.xml,java.sql,java.instrument,jdk.unsupported,jdk.incubator.vector,jdk.management,jdk.zipfs,jdk.jfr,java.desktop,jdk.crypto.ec,java.scripting,java.security.jgss \
    --strip-debug --no-man-pages --no-header-files --output "$tmp/runtime" 2>/dev/null
rm -f "$tmp"/runtime/lib/lib{awt,awt_xawt,awt_headless,fontmanager,freetype,lcms,mlib_image,splashscreen,javajpeg,jsound}.so
(cd "$tmp" && XZ_OPT=-9 tar cJf "$out/runtime.txz" runtime)
rm -rf "$tmp"
cat > "$out/run.sh" <<'RUN'
#!/usr/bin/env bash
# The CUDA backend's GPU tests (all of package dev.kiln.backend.cuda unless JUnit selectors are given), the kernel
# checks (CuPy), and with --benchmark the decode and kernel compilation benchmarks. Run from the repository root.
here=$(cd "$(dirname "$0")" && pwd)
runtime=$(mktemp -d)
tar xJf "$here/runtime.txz" -C "$runtime"
java="$runtime/runtime/bin/java"
cp="$here/classes:$here/test-classes:$(ls "$here"/lib/*.jar | tr '\n' ':')"
export KILN_CUDA_LIBRARY_PATH=${KILN_CUDA_LIBRARY_PATH:-/usr/local/cuda/targets/x86_64-linux/lib:/usr/local/nvidia/lib64}
flags="--add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -Xss4m"
benchmark=
if [ "${1:-}" = "--benchmark" ]; then benchmark=1; shift; fi
select=("$@")
[ ${#select[@]} -gt 0 ] || select=(--select-package dev.kiln.backend.cuda)
"$java" $flags -Dkiln.fixtures="$PWD/fixtures" -jar "$here/junit-console.jar" execute --class-path "$cp" "${select[@]}" \
    --disable-banner --disable-ansi-colors --details=tree
status=$?
for check in check_kernels check_quant_kernels check_fp8_kernels; do
    python3 "bundles/backend-cuda/tools/$check.py" | grep -v "^PASS" || status=1
done
if [ -n "$benchmark" ]; then
    # KILN_BENCH_OPTS: e.g. -Dkiln.bench.graphs=on -Dkiln.bench.profile=true (GPU time per chunk of each step)
    "$java" $flags ${KILN_BENCH_OPTS:-} -cp "$cp" dev.kiln.backend.cuda.DecodeBenchmark 128 256 1,8,32,128
    # The first start's kernel compilation: each source as one program against its units in parallel.
    "$java" $flags -cp "$cp" dev.kiln.backend.cuda.KernelCompileBenchmark sm_90a 2
fi
exit $status
RUN
chmod +x "$out/run.sh"
du -sh "$out"
