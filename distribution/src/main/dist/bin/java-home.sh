# Sourced by Kiln's scripts: kiln_find_jdk prints the home of a Java 25 or newer runtime, looking at JAVA_HOME,
# then /usr/lib/jvm, then the java on the PATH; it fails if there is none. With "javac" as argument it asks for a
# full JDK (to build), otherwise a runtime suffices (to run a built distribution).

kiln_java_feature() {
    "$1/bin/java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p'
}

kiln_find_jdk() {
    need=${1:-java}
    path_java=$(command -v java 2>/dev/null || true)
    [ -n "$path_java" ] && path_java=$(dirname "$(dirname "$(readlink -f "$path_java")")")
    for candidate in "${JAVA_HOME:-}" /usr/lib/jvm/*25* /usr/lib/jvm/* "$path_java"; do
        [ -n "$candidate" ] && [ -x "$candidate/bin/java" ] && [ -x "$candidate/bin/$need" ] || continue
        feature=$(kiln_java_feature "$candidate")
        case "$feature" in '' | 1.*) continue ;; esac
        if [ "${feature%%.*}" -ge 25 ] 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}
