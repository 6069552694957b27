"""Computes the extended tokenizer reference of the Kiln tokenizer tests.

Usage: python make_reference.py <fixtures>/tokenizers <out.json>

Needs the Hugging Face `tokenizers` and `transformers` packages. For each fixture tokenizer it records
  - `cases`: encodings of hand-picked hard strings and of seeded random strings drawn from many scripts,
    whitespace kinds, emoji sequences and special-token spellings (ids from `tokenizers`, without special
    tokens), with their decodings;
  - `invalid_utf8`: decodings of byte tokens that do not form valid UTF-8 (lossy decoding);
  - `special_tokens`: encodings with special tokens added, by `tokenizers` (the post-processor of
    tokenizer.json) and by transformers' AutoTokenizer (which honours tokenizer_config.json);
  - `chat`: renderings by transformers' apply_chat_template, of the model's own template on richer
    conversations and of a template exercising Python-isms (string methods, tojson, namespace, slicing).
"""
import json
import random
import sys

import tokenizers
import transformers
from transformers import AutoTokenizer

HARD = [
    "\u00a0NBSP\u00a0 x \u00a0\u00a0y",
    "a\u3000b\u3000\u3000c\u3000",
    "x\u2028y\u0085z\u2029w",
    "line\r\nnext\r\n\r\nlast\r",
    "  \t  \n  x\t\t\n\n\t y",
    "don'T STOP'S 'LL 'Ve 'RE 'M 'D's",
    "\u017f's '\u017f 'K \u212a",
    "\u0661\u0662\u0663\u0664 digits \uff14\uff15\uff16 \u00b2\u00b3 \u2160\u2161",
    "e\u0301 combining \u00e9 A\u030a \u212b",
    "\u01c4 \u01c5 title \ufb01 ligature",
    "mixed \u4e2d\u6587English\u6df7\u5408123abc\u4e2d",
    "emoji \U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466 family \u2764\ufe0f \U0001F1EF\U0001F1F5",
    "special <|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|><|endoftext|> <|im_end|>x",
    "fake <|im_start token <| im_end |>",
    "<think></think><think>\n\n</think>\n\n",
    "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</tool_call>",
    "<|fim_prefix|>def f(<|fim_suffix|>)<|fim_middle|>",
    "\u65e5\u672c\u8a9e\u3068\u30ab\u30bf\u30ab\u30ca\u3001\u3072\u3089\u304c\u306a\u3002\u30fc\u309d",
    "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8",
    "\u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u0646\u0635",
    "\u0939\u093f\u0928\u094d\u0926\u0940 \u092a\u093e\u0920",
    "a" * 300,
    "word" * 100 + " " + "\u4e2d" * 120,
    "1234567890123 3.14e-10 -0.5 1,000,000",
    "x = {'key': [1, 2, 3]}\nprint(x)  # comment\n\n\n    return",
    "    indented\n\tcode\n        deeper\n",
    "!!!???...,,, --- ___ *** ''' \"\"\" ``` ~~~",
    "$%^&*()_+-=[]{}|;':\",./<>?\\",
    "\U0001F600\U0001F600\U0001F600 \U0001F600abc",
    "zero\u200bwidth\u200djoiner\u200c",
    "\ufeffBOM start",
    "NUL\u0000char control\u0007bell \u001b[0m",
    "<\uff5cbegin\u2581of\u2581sentence\uff5c>hi<\uff5cUser\uff5c>x<\uff5cAssistant\uff5c>",
    "<\uff5ctool\u2581calls\u2581begin\uff5c><\uff5ctool\u2581call\u2581begin\uff5c>function",
    "   ",
    "\n\n\n",
    " \n \n",
    "Hello world",
    " Hello world",
    "HELLO WORLD 'S",
]

POOL = (
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") * 3
    + list("0123456789") * 2
    + list(" ") * 12
    + list("\t\n\r") * 2
    + list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    + list("\u4e2d\u6587\u5b57\u7b26\u6d4b\u8bd5\u3002\uff0c\u3001\u300c\u300d")
    + list("\u3072\u3089\u304c\u306a\u30ab\u30bf\u30ab\u30ca\u30fc")
    + list("\ud55c\uad6d\uc5b4")
    + list("\u0440\u0443\u0441\u0441\u043a\u0438\u0439\u0395\u03bb\u03bb\u03b7\u03bd")
    + list("\u0627\u0644\u0639\u0631\u0628\u064a\u0629")
    + list("\u0939\u093f\u0928\u094d\u0926\u0940")
    + list("\u00e9\u00e8\u00fc\u00f1\u00df\u0301\u0308")
    + list("\u00a0\u3000\u2028\u0085\u200b\u200d\ufe0f")
    + list("\uff21\uff42\uff13\u00b2\u2160\u0661")
    + ["\U0001F600", "\U0001F44D", "\U0001F3FD", "\U0001D518", "\U0001F468", "\U00020000"]
    + ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL"]
    + ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>",
       "<\uff5cUser\uff5c>", "<\uff5cAssistant\uff5c>", "<\uff5cend\u2581of\u2581sentence\uff5c>"]
)


def random_strings(count, seed):
    rng = random.Random(seed)
    return ["".join(rng.choice(POOL) for _ in range(rng.randint(1, 60))) for _ in range(count)]


def byte_token_ids(tok, values):
    """Ids of the byte-level tokens standing for single bytes."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    char_of = dict(zip(bs, (chr(c) for c in cs)))
    return [tok.token_to_id(char_of[v]) for v in values]


PY_TEMPLATE = (
    "{%- set ns = namespace(count=messages|length - 1, last='') -%}\n"
    "{%- for m in messages[::-1] -%}{{ loop.index0 }}:{{ m.role }}|{%- endfor %}\n"
    "{{ ns.count }}\n"
    "{%- for m in messages %}\n"
    "    {%- if m.role == 'system' %}{% continue %}{% endif %}\n"
    "    {%- set ns.last = m.content %}\n"
    "[{{ m.content.strip() }}][{{ m.content.lstrip('\\n').rstrip() }}][{{ m.content.split()|join(',') }}]"
    "[{{ m.content.split(' ', 1)|length }}][{{ m.content.rsplit(' ', 1)[0] }}]"
    "[{% if m.content.startswith('Hi') %}Y{% else %}N{% endif %}]"
    "[{% if m.content.endswith(('?', '!')) %}Y{% else %}N{% endif %}]"
    "[{{ m.content.upper() }}][{{ m.content.lower() }}][{{ m.content.title() }}]"
    "[{{ m.content.replace(' ', '_') }}][{{ m.content[-1] }}][{{ m.content[1:4] }}]"
    "[{{ m.content.find('o') }}][{{ m.content.count('o') }}]\n"
    "    {%- if loop.index > 3 %}{% break %}{% endif %}\n"
    "{%- endfor %}\n"
    "{{ ns.last }}\n"
    "{{ tools | tojson }}\n"
    "{{ tools[0] | tojson(indent=2) }}\n"
    "{{ {'b': 1.5, 'a': [1, 2.0, 1e-7, 1e20], 'c': '\u00e9\"\\\\\\n\\t'} | tojson }}\n"
    "{{ '-'.join(['x', 'y', 'z']) }}\n"
    "{% if add_generation_prompt %}GEN{% endif %}\n"
)

TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city, \u00e0 la carte",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"},
                           "days": {"type": "integer", "minimum": 1}},
            "required": ["city"],
        },
    },
}]


def conversations(name):
    if name == "qwen3":
        return [
            {"messages": [{"role": "system", "content": "Be brief."},
                          {"role": "user", "content": "Hi"},
                          {"role": "assistant", "content": "<think>\nThe user greets.\n</think>\n\nHello!"},
                          {"role": "user", "content": "How are you?"}],
             "add_generation_prompt": True, "variables": {}},
            {"messages": [{"role": "user", "content": "2+2?"}],
             "add_generation_prompt": True, "variables": {"enable_thinking": False}},
            {"messages": [{"role": "user", "content": "Weather in Paris?"}],
             "add_generation_prompt": True, "variables": {"tools": TOOLS}},
            {"messages": [{"role": "system", "content": "You help."},
                          {"role": "user", "content": "Weather in Paris?"},
                          {"role": "assistant", "content": "",
                           "tool_calls": [{"type": "function", "function": {
                               "name": "get_weather", "arguments": {"city": "Paris", "days": 2}}}]},
                          {"role": "tool", "content": "{\"temp\": 21}"},
                          {"role": "tool", "content": "sunny"}],
             "add_generation_prompt": True, "variables": {"tools": TOOLS}},
            {"messages": [{"role": "user", "content": "Q1"},
                          {"role": "assistant", "content": "A1", "reasoning_content": "thinking about Q1"},
                          {"role": "user", "content": "Q2"},
                          {"role": "assistant", "content": "A2", "reasoning_content": "thinking about Q2"}],
             "add_generation_prompt": False, "variables": {}},
        ]
    return [
        {"messages": [{"role": "system", "content": "S1"}, {"role": "system", "content": "S2"},
                      {"role": "user", "content": "Hi"}],
         "add_generation_prompt": True, "variables": {}},
        {"messages": [{"role": "user", "content": "Weather?"},
                      {"role": "assistant", "content": None,
                       "tool_calls": [{"type": "function", "function": {"name": "get_weather",
                                                                         "arguments": "{\"city\": \"Paris\"}"}},
                                      {"type": "function", "function": {"name": "get_time",
                                                                         "arguments": "{}"}}]},
                      {"role": "tool", "content": "21C"},
                      {"role": "tool", "content": "noon"},
                      {"role": "assistant", "content": "It is 21C at noon."},
                      {"role": "user", "content": "Thanks"}],
         "add_generation_prompt": True, "variables": {}},
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
         "add_generation_prompt": False, "variables": {}},
    ]


def main():
    root, out_path = sys.argv[1], sys.argv[2]
    result = {"tokenizers": tokenizers.__version__, "transformers": transformers.__version__, "models": {}}
    for name in ["qwen3", "deepseek_v3"]:
        folder = f"{root}/{name}"
        tok = tokenizers.Tokenizer.from_file(f"{folder}/tokenizer.json")
        auto = AutoTokenizer.from_pretrained(folder)
        texts = HARD + random_strings(300, seed=20261122)
        cases = []
        for text in texts:
            ids = tok.encode(text, add_special_tokens=False).ids
            cases.append({"text": text, "ids": ids,
                          "decoded": tok.decode(ids, skip_special_tokens=False),
                          "decoded_skip_special": tok.decode(ids, skip_special_tokens=True)})
        invalid = []
        for seq in [[0xF0], [0xF0, 0x9F], [0xE4, 0x41], [0x80], [0xC0, 0x80], [0xED, 0xA0, 0x80],
                    [0xF4, 0x90, 0x80, 0x80], [0xE0, 0x80, 0x80], [0xF0, 0x9F, 0x98], [0xE4, 0xB8, 0xE4, 0xB8, 0xAD],
                    [0xFF, 0xFE, 0x41], [0xC3], [0xEF, 0xBF, 0xBF]]:
            ids = byte_token_ids(tok, seq)
            invalid.append({"bytes": seq, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
        special = []
        for text in ["Hello", "<|im_start|>x", ""]:
            special.append({"text": text,
                            "tokenizers_ids": tok.encode(text, add_special_tokens=True).ids,
                            "transformers_ids": auto(text, add_special_tokens=True)["input_ids"]})
        chats = []
        for conv in conversations(name):
            variables = dict(conv["variables"])
            tools = variables.pop("tools", None)
            try:
                prompt = auto.apply_chat_template(conv["messages"], tools=tools, tokenize=False,
                                                  add_generation_prompt=conv["add_generation_prompt"], **variables)
                chats.append({"template": "model", **conv, "prompt": prompt})
            except Exception as e:  # recorded, so that one template's refusal does not hide the others
                chats.append({"template": "model", **conv, "error": repr(e)})
        py_messages = [{"role": "system", "content": "sys"},
                       {"role": "user", "content": "  Hi there, how are you?  "},
                       {"role": "assistant", "content": "\n\nFine thanks!"},
                       {"role": "user", "content": "one two  three"},
                       {"role": "assistant", "content": "four"},
                       {"role": "user", "content": "never shown"}]
        entry = {"template": PY_TEMPLATE, "messages": py_messages, "add_generation_prompt": True,
                 "variables": {"tools": TOOLS}}
        try:
            entry["prompt"] = auto.apply_chat_template(py_messages, tools=TOOLS, chat_template=PY_TEMPLATE,
                                                       tokenize=False, add_generation_prompt=True)
        except Exception as e:
            entry["error"] = repr(e)
        chats.append(entry)
        result["models"][name] = {"cases": cases, "invalid_utf8": invalid, "special_tokens": special,
                                  "chat": chats}
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
