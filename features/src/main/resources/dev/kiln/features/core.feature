# The container every Kiln runs: logging, Declarative Services, Config Admin, hot deploy, Gson and the API.
# Bundles start in the order listed (SPI Fly and slf4j before anything that logs).
bundle org.ow2.asm:asm
bundle org.ow2.asm:asm-tree
bundle org.ow2.asm:asm-analysis
bundle org.ow2.asm:asm-commons
bundle org.ow2.asm:asm-util
bundle org.apache.aries.spifly:org.apache.aries.spifly.dynamic.bundle
bundle org.slf4j:slf4j-api
bundle org.slf4j:slf4j-simple
bundle org.osgi:org.osgi.util.function
bundle org.osgi:org.osgi.util.promise
bundle org.osgi:org.osgi.service.component
bundle org.apache.felix:org.apache.felix.scr
bundle org.apache.felix:org.apache.felix.configadmin
bundle org.apache.felix:org.apache.felix.fileinstall
bundle dev.kiln:kiln-config-files
bundle com.google.code.gson:gson
bundle dev.kiln:kiln-api
