# The HTTP side: Jetty 12 through the servlet whiteboard, the tokenizer and Kiln's endpoints.
include core
bundle org.apache.felix:org.apache.felix.http.servlet-api
bundle org.apache.felix:org.apache.felix.http.jetty12
bundle dev.kiln:kiln-tokenizer
bundle dev.kiln:kiln-server
