"""Trains the byte-level BPE tokenizer of the default model and encodes the splits for training.

Writes to --out: tokenizer.json, tokenizer_config.json (special tokens and a plain chat template), and to
--data: train.bin and valid.bin (little-endian uint16 token ids; every document ends with <|eos|>).

The tokenizer is deliberately plain so that any Hugging Face compatible reader loads it: a BPE model over the
256 byte symbols, the GPT-2 byte-level pre-tokenizer (its split regex included), the byte-level decoder, no
normalizer.

usage: python3 train_tokenizer.py --data DIR --out DIR [--vocab 8192]
"""
import argparse
import json
import os

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

# Ids 0..5, in this order: they are written into the model configs.
SPECIAL = ["<|pad|>", "<|bos|>", "<|eos|>", "<|system|>", "<|user|>", "<|assistant|>"]
EOS = "<|eos|>"
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>{{ message['content'] }}<|eos|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def documents(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    docs = text.split(EOS + "\n")
    if docs and not docs[-1]:
        docs.pop()
    return docs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--vocab", type=int, default=8192)
    a = ap.parse_args()

    train_docs = documents(os.path.join(a.data, "train.txt"))
    valid_docs = documents(os.path.join(a.data, "valid.txt"))

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(vocab_size=a.vocab, min_frequency=2, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)

    def plain(docs):
        # The role markers are special tokens: keep their spelling out of the merges.
        for d in docs:
            for s in SPECIAL:
                d = d.replace(s, "\n")
            yield d

    tok.train_from_iterator(plain(train_docs), trainer, length=len(train_docs))
    for i, s in enumerate(SPECIAL):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    os.makedirs(a.out, exist_ok=True)
    tok.save(os.path.join(a.out, "tokenizer.json"))
    config = {
        "bos_token": "<|bos|>",
        "eos_token": "<|eos|>",
        "pad_token": "<|pad|>",
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 1024,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": CHAT_TEMPLATE,
    }
    with open(os.path.join(a.out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=2)

    eos = tok.token_to_id(EOS)
    stats = {"vocab_size": tok.get_vocab_size()}
    for name, docs in (("train", train_docs), ("valid", valid_docs)):
        encoded = tok.encode_batch(docs, add_special_tokens=False)
        ids = []
        for e in encoded:
            ids.extend(e.ids)
            ids.append(eos)
        arr = np.asarray(ids, dtype=np.uint16)
        arr.tofile(os.path.join(a.data, name + ".bin"))
        stats[name + "_tokens"] = int(arr.size)
        stats[name + "_chars_per_token"] = round(sum(map(len, docs)) / arr.size, 3)
    # Round trip: the decoder must give back the text the encoder saw.
    sample = valid_docs[0][:2000]
    assert tok.decode(tok.encode(sample).ids) == sample, "byte-level round trip failed"
    # A few encodings for comparing other implementations of this tokenizer with the reference one.
    probes = [valid_docs[0][:600], valid_docs[1][:600], "Hello, world! It's 1961 -- isn't it?\n\n  Two  spaces.",
              "<|user|>Tell me a story.<|eos|><|assistant|>", "caf\u00e9 na\u00efve \u2014 \u00bd \U0001F600"]
    stats["probes"] = [{"text": t, "ids": tok.encode(t, add_special_tokens=False).ids} for t in probes]
    print(json.dumps({k: v for k, v in stats.items() if k != "probes"}))
    with open(os.path.join(a.data, "tokens.json"), "w") as f:
        json.dump(stats, f, indent=1)


if __name__ == "__main__":
    main()
