package dev.kiln.itests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.net.http.HttpResponse;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/**
 * A fresh `kiln serve` with no arguments serves the embedded default model (DeepSeek-V3 architecture with MLA, MoE
 * and an MTP module) and answers a chat request with English words.
 */
class DefaultModelIT {
    @Test
    void serveWithoutAModelAnswersChatInEnglish() throws Exception {
        try (KilnProcess kiln = KilnProcess.serve(List.of())) {
            OpenAiApiIT.awaitModel(kiln);
            JsonObject models = JsonParser.parseString(OpenAiApiIT.raw(kiln, "GET", "/v1/models", null).body()).getAsJsonObject();
            assertEquals("default", models.getAsJsonArray("data").get(0).getAsJsonObject().get("id").getAsString());
            HttpResponse<String> r = OpenAiApiIT.raw(kiln, "POST", "/v1/chat/completions",
                    "{\"messages\":[{\"role\":\"user\",\"content\":\"And God said unto Moses, what shall I tell the people?\"}],"
                            + "\"max_tokens\":40,\"temperature\":0}");
            assertEquals(200, r.statusCode(), r.body());
            String text = JsonParser.parseString(r.body()).getAsJsonObject().getAsJsonArray("choices").get(0)
                    .getAsJsonObject().getAsJsonObject("message").get("content").getAsString();
            Matcher words = Pattern.compile("\\b[A-Za-z]{2,}\\b").matcher(text);
            int count = 0;
            while (words.find()) count++;
            assertTrue(count >= 5, "an answer in English words: '" + text + "'");
        }
    }
}
