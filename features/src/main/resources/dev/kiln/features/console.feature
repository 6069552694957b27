# The Felix Web Console at /system/console, with the DS and HTTP plugins.
include server
bundle commons-io:commons-io
bundle commons-fileupload:commons-fileupload
bundle org.owasp.encoder:encoder
bundle org.apache.felix:org.apache.felix.inventory
bundle org.apache.felix:org.apache.felix.log
bundle org.apache.felix:org.apache.felix.webconsole
bundle org.apache.felix:org.apache.felix.webconsole.plugins.ds
bundle org.apache.felix:org.apache.felix.http.webconsoleplugin
bundle dev.kiln:kiln-console
