#!/usr/bin/env python3
"""Reference tokenizer fixtures for Keel's tokenizer.json loader, made by Hugging Face `tokenizers`.

NOT run by CI (it needs the `tokenizers` wheel). One mode:

  make_tokenizer_fixtures.py [--out Tests/Fixtures/tokenizers] [--strings N] [--no-speed]
  make_tokenizer_fixtures.py --speed-against-keel .build/release/keel
      Times the library and `keel tokenize --bench` on the committed fixtures in one run (best of
      3 alternating rounds each, one thread) and prints both with Keel's speed-up.
      Trains five tiny tokenizers with `tokenizers` on a deterministic synthetic corpus
      (random.Random(0): English words, arithmetic, code, accents, CJK, Arabic, emoji), saves each
      with `Tokenizer.save` as <name>/tokenizer.json (plus tokenizer_config.json, and for qwen2-bpe
      a generation_config.json whose eos_token_id is a list of two ids; qwen2-bpe's tokenizer.json is
      then rewritten the way Qwen2.5 / Qwen3 ship it: merges as "a b" strings, "" subword prefix and
      suffix, ByteLevel decoder options false), reloads each from disk
      with `Tokenizer.from_file` (so the expected values come from exactly what is on disk), and
      writes, next to the directories:
        corpus.jsonl       one JSON object per line (about 2,000; deterministic, random.Random(1)):
                           {"text": ..., "expected": {"<name>": {"ids", "ids_special", "decoded",
                           "decoded_skip_special"}}} where
                             ids                  encode(text, add_special_tokens=False).ids
                             ids_special          encode(text, add_special_tokens=True).ids
                             decoded              decode(ids, skip_special_tokens=False)
                             decoded_skip_special decode(ids, skip_special_tokens=True)
        decode_only.jsonl  {"tokenizer", "ids", "decoded", "decoded_skip_special"}: random id
                           sequences (any id, special ones included) that need not come from any
                           text, so byte-level pieces that are not whole UTF-8 characters are
                           decoded (lossy: U+FFFD) and decoders see arbitrary neighbours
        versions.json      tokenizers / python versions
        speed.json         (unless --no-speed) one thread (RAYON_NUM_THREADS=1), `encode` in a
                           Python loop over the whole corpus 20 times: microseconds per string and
                           MB/s of UTF-8 input, per tokenizer; the only file that differs run to run

  The tokenizers (details in Tests/Fixtures/tokenizers/README.md):
    qwen2-bpe     NFC; Split(Qwen2 regex, isolated) + ByteLevel(use_regex false); BPE; specials
                  after the model vocabulary; non-special added tokens <think>, </think>, <tool call>
    gpt2-bpe      ByteLevel(use_regex true) pre-tokenizer; BPE; <|endoftext|> inside the model
                  vocabulary (id 0); <mask> special with lstrip; non-special added token "café"
    llama3-bpe    Split(Llama-3 regex, \\p{N}{1,3}) + ByteLevel; BPE ignore_merges true;
                  post-processor Sequence[ByteLevel, TemplateProcessing "<|begin_of_text|> $A"]
    wordlevel     WordLevel, one token per character (Split(Regex("."), isolated)), [UNK], Fuse
    bpe-decoders  SentencePiece-like BPE without byte fallback: Prepend("▁") + Replace(" ", "▁"),
                  Split("▁" as a String pattern, merged_with_next), unk <unk> with fuse_unk, decoder
                  Sequence[Replace("▁", " "), Fuse, Strip(" ", 1, 0)], template "<s> $A </s>"

Setup (CPU is enough; only PyPI is needed), from the repository root:
  python3 -m venv /tmp/tokenv && /tmp/tokenv/bin/pip install tokenizers==0.23.3
  /tmp/tokenv/bin/python scripts/make_tokenizer_fixtures.py      # writes Tests/Fixtures/tokenizers/*
Everything but speed.json is deterministic: a second run reproduces the files byte for byte.
"""
import os

# One thread everywhere (training and encoding), set before tokenizers is imported.
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["RAYON_RS_NUM_CPUS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse
import json
import platform
import random
import shutil
import sys
import time
import unicodedata

try:
    import tokenizers
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
except ImportError as e:  # pragma: no cover
    sys.exit(f"make_tokenizer_fixtures.py needs tokenizers (pip install tokenizers==0.23.3): {e}")

PINNED = "0.23.3"

QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")

SPEED_REPEATS = 20

# ----------------------------------------------------------------------------------------------
# Text material (shared by the training corpus and the oracle corpus; different seeds)

WORDS = ("the of and to in is was for that with as on by at from it his an were are which this be "
         "or had not but first one their its new after who they two her she been other when there all "
         "during into school time may years more most only over city some world would where later up "
         "such used many can state about national out known university united then made number two "
         "three four five answer question sum total carry digit add subtract multiply result check "
         "model token train batch learning rate reward policy value gradient step loss sample prompt "
         "don't can't won't it's I'm we've they're you'll she'd let's isn't").split()
CAPS = "The A In It We They This When After She He Our Your Each Every Note Please Then".split()
ACCENTED = ["café", "naïve", "señor", "über", "Zürich", "façade", "résumé", "piñata", "jalapeño", "crème brûlée",
            "São Paulo", "Ångström", "coöperate", "déjà vu", "fiancée", "Müller", "Øresund", "Łódź", "Kraków", "İstanbul"]
SCRIPTS = ["你好，世界", "日本語のテキスト", "東京タワー", "한국어 문장", "中文分词测试", "مرحبا بالعالم", "السلام عليكم",
           "שלום עולם", "Привет, мир", "Καλημέρα κόσμε", "नमस्ते दुनिया", "สวัสดีชาวโลก", "Xin chào thế giới",
           "ゲーム", "ｶﾀｶﾅ", "ＡＢＣ１２３", "٣٤٥ + ٦", "²³ ½ ⅔", "Ⅻ ⅷ", "∑ x² ≤ ∞", "ﬁne ﬂow", "Ǆ ǅ ǆ"]
EMOJI = ["😀", "😂", "👍", "👍🏽", "❤️", "🔥", "🎉", "👨‍👩‍👧‍👦", "👩🏾‍💻", "🏳️‍🌈", "🇯🇵", "🇺🇸", "🇩🇪", "🤖", "🦀",
         "🧑‍🚀", "☃", "✔️", "1️⃣", "#️⃣", "🫠"]
CODE = ["def f(x):\n    return x + 1\n", "for (int i = 0; i < n; i++) {\n\tsum += a[i];\n}",
        "if x == 0:\n    print('zero')", "let y = [1, 2, 3].map { $0 * 2 }", "#include <stdio.h>",
        "SELECT * FROM t WHERE id = 42;", "{\"key\": \"value\", \"n\": 12}", "a && b || !c", "x->y = *p++;",
        "// TODO: fix this", "/* comment */", "`code` and **bold**", "<div class=\"a\">hi</div>",
        "path/to/file.txt", "https://example.com/a?b=1&c=2", "x >>= 2; y <<= 3;", "r'\\s+' and \"\\n\"",
        "    indented line", "\tTabbed\tcolumns\t", "λx. x + 1", "assert(a != b)", "foo_bar_baz = None"]
PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + ["...", "--", "?!", "!!!", "—", "–", "“", "”", "‘", "’", "«", "»", "…", "·", "•"]


def arithmetic(rng):
    """Keel-style prompts and scratchpads: '17+25=42#42', '3+4+5=', '3+4=7;7+5=12#12', ..."""
    k = rng.choice([1, 1, 2, 3])
    xs = [rng.randint(0, 10 ** rng.randint(1, 4) - 1) for _ in range(k + 1)]
    op = rng.choice("++-*")
    if op == "*":
        xs = xs[:2]
        expr = f"{xs[0]}*{xs[1]}"
        val = xs[0] * xs[1]
        steps = []
    else:
        val, steps = xs[0], []
        expr = str(xs[0])
        for x in xs[1:]:
            nv = val + x if op == "+" else val - x
            steps.append(f"{val}{op}{x}={nv}")
            expr += f"{op}{x}"
            val = nv
    form = rng.randrange(5)
    if form == 0:
        return expr + "="
    if form == 1:
        return f"{expr}={val}#{val}"
    if form == 2 and steps:
        return ";".join(steps) + f"#{val}"
    if form == 3:
        return f"Q: {expr}=? A: {val}"
    return f"{expr}={val}"


def sentence(rng, n=None):
    n = n or rng.randint(3, 14)
    ws = [rng.choice(WORDS) for _ in range(n)]
    s = rng.choice(CAPS) + " " + " ".join(ws)
    return s + rng.choice([".", ".", "!", "?", ",", ":", ""])


def unicode_line(rng):
    parts = []
    for _ in range(rng.randint(1, 4)):
        r = rng.random()
        if r < 0.3:
            parts.append(rng.choice(ACCENTED))
        elif r < 0.6:
            parts.append(rng.choice(SCRIPTS))
        elif r < 0.85:
            parts.append(rng.choice(EMOJI))
        else:
            parts.append(rng.choice(WORDS))
    return rng.choice([" ", "", ", "]).join(parts)


def training_corpus(n=4000):
    rng = random.Random(0)
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.45:
            out.append(sentence(rng))
        elif r < 0.65:
            out.append(arithmetic(rng))
        elif r < 0.78:
            out.append(rng.choice(CODE))
        elif r < 0.95:
            out.append(unicode_line(rng))
        else:
            out.append(" ".join(rng.choice(PUNCT) for _ in range(rng.randint(1, 5))))
    return out


# ----------------------------------------------------------------------------------------------
# The tokenizers


def byte_level_bpe(corpus, vocab_size, ignore_merges, pre, normalizer=None, trainer_specials=()):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=list(trainer_specials))
    tok.train_from_iterator(corpus, trainer)
    return tok


def build_qwen2(corpus):
    pre = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
                                   pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok = byte_level_bpe(corpus, 600, False, pre, normalizer=normalizers.NFC())
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    # As in Qwen2/Qwen3: the specials come after the model vocabulary and are not in model.vocab;
    # <think> / </think> are added tokens that are not special (normalized false, like Qwen3's).
    tok.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok.add_tokens([AddedToken("<think>", normalized=False, special=False),
                    AddedToken("</think>", normalized=False, special=False),
                    # a space is not a ByteLevel character: the ByteLevel decoder falls back to the raw UTF-8
                    AddedToken("<tool call>", normalized=False, special=False)])
    cfg = {"tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "eos_token": "<|im_end|>",
           "pad_token": "<|endoftext|>", "unk_token": None, "add_prefix_space": False, "errors": "replace",
           "model_max_length": 32768, "split_special_tokens": False,
           "added_tokens_decoder": added_tokens_decoder(tok)}
    gen = {"bos_token_id": tok.token_to_id("<|endoftext|>"), "pad_token_id": tok.token_to_id("<|endoftext|>"),
           "eos_token_id": [tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")], "do_sample": True,
           "temperature": 0.7, "top_p": 0.8, "top_k": 20}
    return tok, cfg, gen, qwen2_patch


def qwen2_patch(spec):
    """Make the saved file look like Qwen2.5 / Qwen3's own tokenizer.json (written by older tokenizers):
    merges as "a b" strings, "" (not null) subword prefix / suffix, and a ByteLevel decoder with all
    options false (the Python decoders.ByteLevel() ignores its arguments; the options do not change decoding)."""
    spec["model"]["merges"] = [" ".join(m) for m in spec["model"]["merges"]]
    spec["model"]["continuing_subword_prefix"] = ""
    spec["model"]["end_of_word_suffix"] = ""
    spec["decoder"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    return spec


def build_gpt2(corpus):
    pre = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok = byte_level_bpe(corpus, 500, False, pre, trainer_specials=["<|endoftext|>"])
    tok.post_processor = processors.ByteLevel()
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=False, special=True)])   # RoBERTa-style
    # é is a ByteLevel character (byte 0xE9), so decoding this added token yields "caf" + byte 0xE9 -> "caf\ufffd"
    tok.add_tokens([AddedToken("café", special=False)])
    cfg = {"tokenizer_class": "GPT2Tokenizer", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
           "unk_token": "<|endoftext|>", "pad_token": None, "add_prefix_space": False, "model_max_length": 1024}
    return tok, cfg, None, None


UNREACHABLE = [" tokenization", "tokenization", " Tokenization", " internationalization", "Hello", " policy",
               " gradient", " café", "你好", "    ", "!!!", "😀"]


def build_llama3(corpus):
    pre = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
                                   pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok = byte_level_bpe(corpus, 600, True, pre)
    # Like Llama-3's vocabulary (converted from tiktoken), some tokens cannot be built by the merges
    # in rank order: whole words appended to model.vocab with no merge making them. ignore_merges=true
    # emits such a word as one token; applying the merges would split it.
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    to_bytes = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    for word in UNREACHABLE:
        piece = to_bytes.pre_tokenize_str(word)[0][0]
        if piece not in vocab:
            vocab[piece] = len(vocab)
    tok = Tokenizer.from_str(json.dumps(spec))
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tok.add_special_tokens(specials)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)])])
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
           "eos_token": "<|end_of_text|>", "model_max_length": 131072}
    return tok, cfg, None, None


WORDLEVEL_SYMBOLS = ["<pad>", "<s>", "</s>", "[UNK]"] + list("abcdefghijklmnopqrstuvwxyz") + [" "] + list("+-*=#;,:") + list("0123456789")


def build_wordlevel(_corpus):
    vocab = {s: i for i, s in enumerate(WORDLEVEL_SYMBOLS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated", invert=False)
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(["<pad>", "<s>", "</s>", "[UNK]"])
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
           "pad_token": "<pad>", "unk_token": "[UNK]"}
    return tok, cfg, None, None


def build_bpe_decoders(corpus):
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next", invert=False)
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Fuse(), decoders.Strip(content=" ", left=1, right=0)])
    # Trained on the corpus without its characters above U+00FF, so those (CJK, emoji, combining marks,
    # Cyrillic, ...) are not in the vocabulary and become <unk>, a run of them one <unk> (fuse_unk).
    # (Not limit_alphabet: it breaks frequency ties in hash order, so the vocabulary changes run to run.)
    latin1 = ["".join(c for c in line if ord(c) < 0x100) for line in corpus]
    trainer = trainers.BpeTrainer(vocab_size=400, min_frequency=2, show_progress=False,
                                  special_tokens=["<unk>", "<s>", "</s>"])
    tok.train_from_iterator(latin1, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> $B:1 </s>:1",
                                                       special_tokens=[("<s>", tok.token_to_id("<s>")),
                                                                       ("</s>", tok.token_to_id("</s>"))])
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
           "unk_token": "<unk>", "pad_token": None}
    return tok, cfg, None, None


def added_tokens_decoder(tok):
    out = {}
    for i, t in sorted(tok.get_added_tokens_decoder().items()):
        out[str(i)] = {"content": t.content, "lstrip": t.lstrip, "normalized": t.normalized, "rstrip": t.rstrip,
                       "single_word": t.single_word, "special": t.special}
    return out


BUILDERS = {"qwen2-bpe": build_qwen2, "gpt2-bpe": build_gpt2, "llama3-bpe": build_llama3,
            "wordlevel": build_wordlevel, "bpe-decoders": build_bpe_decoders}


# ----------------------------------------------------------------------------------------------
# The oracle corpus

def fixed_strings():
    s = ["", " ", "  ", "   ", "\t", "\n", "\r\n", "\r", "\n\n", " \n", "\n ", " \t \n", "\r\n\r\n", "\t\t\t",
         "\u00a0", "\u3000", "\u2028", "\u0085", "\x0b\x0c", " \u00a0 ", "\u200b", "a\u200bb", "\x00", "a\x00b", "\x7f",
         "hello", "Hello world", "Hello, world!", "  leading spaces", "trailing spaces   ", "  both  ",
         "two  spaces", "a\tb", "a \t b", "line1\nline2", "line1\r\nline2", "a\n\n\nb", "x \n y", "x  \n\n  y",
         "end with newline\n", "end with crlf\r\n", "   \n  x", "tab\t\tsep", "\ttab first", "mixed \t\n\r\n ws",
         "don't", "Don't", "DON'T", "I'LL", "I'll", "we've", "WE'VE", "they're", "She'd", "I'm", "it's", "IT'S",
         "'s", "'ll've", "rock'n'roll", "o'clock", "don’t (curly)", "it'ſ (long s)", "y'all'd've", "'", "''", "' s",
         "3+4+5=", "3+4=7;7+5=12#12", "17+25=42#42", "0+0=0", "99+1=100#100", "5-9=-4", "12*3=36", "1+1=", "=#;",
         "Q: 123+456=? A: 579", "a+b=c", "+-*=#;,:", "1,234,567.89", "3.14159", "1e-9", "0x1F", "v1.2.3",
         "a<|endoftext|>b", "<|endoftext|>", "<|endoftext|><|endoftext|>", " <|endoftext|> ", "x <|endoftext|>y",
         "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n", "<|im_end|>", "<|im_start", "|im_end|>",
         "<think>x</think>", "<think>\nreasoning here\n</think>\n\nanswer", "<think></think>", " <think> ", "<thinking>",
         "<tool call>{\"a\":1}</tool call>", "<tool  call>", "<|begin_of_text|>Hi<|end_of_text|>",
         "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>", "<s>x</s>", "<s> x </s>", "<pad><pad>", "[UNK]", "<unk>",
         "fill the <mask> here", "fill the  <mask>  here", "<mask>", "a<mask>b", "café", "cafés", "Café café",
         "<s>17+25=42#42</s>", "17+25=42#42</s><pad><pad>",
         "ab", "aa", "aaaa", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "the the the the", "thethethe", "  the", "THE",
         "!!!", "???", "...", "?!?!", "!!!\n", ")))\n\n", "((((", "--", "---", "==", "=>", "->", "::", ";;", "##",
         "@@", "$$$", "%%", "^^", "~~~", "``", "\"\"\"", "'''", "{}", "[]", "<>", "</>", "/*", "*/", "//", "\\\\", "|",
         "é", "e\u0301", "café", "cafe\u0301", "ñ", "n\u0303", "ü", "u\u0308", "Å", "A\u030a", "\u212b", "ǅ",
         "ﬁ", "x\u0301\u0302", "\u0301", "\u0301a", "Zu\u0308rich", "Ǹ", "ḱ", "ṩ", "s\u0323\u0307", "s\u0307\u0323",
         "한", "\u1112\u1161\u11ab", "가나다", "你好", "你好世界", "中文", "日本", "カタカナ", "ｶﾀｶﾅ",
         "مرحبا", "مرحبا بالعالم", "שלום", "Привет", "Ελληνικά", "नमस्ते", "ไทย", "Tiếng Việt",
         "😀", "😀😀", "😀 😀", "👍🏽", "👨‍👩‍👧‍👦", "👩🏾‍💻", "🏳️‍🌈", "🇯🇵", "🇯🇵🇺🇸", "🇺🇸🇩🇪🇫🇷", "❤️", "✔️", "1️⃣", "#️⃣",
         "\ufe0f", "\u200d", "a\u200db", "🫠🤖🦀", "hi 👋 there", "x😀y", "😀!", "🇯", "\U0001F3FD",
         "٣٤٥", "٣٤٥٦٧", "²³", "½", "Ⅻ", "①②③", "１２３", "١٢٣٤٥٦٧٨٩٠", "12٣4", "𝟏𝟐𝟑",
         "\U0010FFFF", "\ue000", "\ufffd", "\ufeffBOM", "�", "ÿ", "Ā", "ĠĊ", "Ġ", "Ċ", "▁", "▁▁", "a▁b", "▁hello",
         "tokenization", "Tokenization", "TOKENIZATION", "internationalization", "pneumonoultramicroscopicsilicovolcanoconiosis"]
    for n in range(1, 13):                      # digit runs of every length 1..12
        s.append("1234567890123"[:n])
        s.append("9" * n)
        s.append(f"x{'7' * n}y")
        s.append(f"{'5' * n} {'0' * n}")
    return s


def generated_strings(rng, n):
    out = []
    soup_alphabet = (list("abcXYZ019 _-'.,;:!?\t\n\r") + ["  ", "\r\n", "é", "e\u0301", "ß", "ñ", "中", "文", "😀",
                     "👍🏽", "🇯🇵", "\u200d", "\u00a0", "٣", "'s", "'LL", "<|endoftext|>", "<think>", "<s>", "<mask>", "café"])

    def soup():
        return "".join(rng.choice(soup_alphabet) for _ in range(rng.randint(1, 25)))

    def ws_mix():
        pieces = [rng.choice(["", " ", "  ", "\t", "\n", "\r\n", " \n", "\n\n", "   "]) for _ in range(rng.randint(1, 4))]
        words = [rng.choice(WORDS) for _ in range(len(pieces))]
        return "".join(p + w for p, w in zip(pieces, words)) + rng.choice(["", " ", "  ", "\n", "\t", " \n"])

    def digits():
        k = rng.randint(1, 12)
        num = str(rng.randint(10 ** (k - 1) if k > 1 else 0, 10 ** k - 1))
        return rng.choice(["{}", "x{}", "{} apples", "${}", "{}.5", "-{}", "({})", "{}{}"]).format(num, num)

    def scratchpad():
        return "; ".join(arithmetic(rng) for _ in range(rng.randint(1, 3))) if rng.random() < 0.3 else arithmetic(rng)

    def code():
        return rng.choice(CODE) if rng.random() < 0.5 else rng.choice(CODE) + rng.choice(["", "\n", " "]) + rng.choice(CODE)

    def unicode_mix():
        t = unicode_line(rng)
        return unicodedata.normalize("NFD", t) if rng.random() < 0.3 else t

    def specials_inside():
        toks = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<tool call>", "<|begin_of_text|>",
                "<|eot_id|>", "<s>", "</s>", "<pad>", "[UNK]", "<unk>", "<mask>", "café"]
        parts = []
        for _ in range(rng.randint(2, 5)):
            parts.append(rng.choice([rng.choice(toks), rng.choice(WORDS), arithmetic(rng), rng.choice([" ", "\n", ""])]))
        return rng.choice(["", " "]).join(parts)

    def punct():
        return "".join(rng.choice(PUNCT) for _ in range(rng.randint(1, 8))) + rng.choice(["", "\n", " x"])

    def lower_arith():   # strings the wordlevel table covers entirely
        return rng.choice([arithmetic(rng), " ".join(w for w in (rng.choice(WORDS) for _ in range(3)) if w.isalpha())]).lower()

    gens = [(lambda: sentence(rng), 18), (scratchpad, 18), (lower_arith, 6), (unicode_mix, 14), (ws_mix, 10),
            (digits, 7), (code, 8), (specials_inside, 8), (punct, 5), (soup, 12)]
    weights = [w for _, w in gens]
    for _ in range(n):
        g = rng.choices([g for g, _ in gens], weights)[0]
        out.append(g())
    return out


def ignore_merges_strings(path, limit=40):
    """Vocabulary strings where llama3-bpe's ignore_merges=true changes the encoding versus false."""
    spec = json.load(open(path, encoding="utf-8"))
    on = Tokenizer.from_file(path)
    spec["model"]["ignore_merges"] = False
    off = Tokenizer.from_str(json.dumps(spec))
    found = []
    for token, i in sorted(spec["model"]["vocab"].items(), key=lambda kv: kv[1]):
        text = on.decode([i])
        if "\ufffd" in text or not text:
            continue
        if on.encode(text, add_special_tokens=False).ids != off.encode(text, add_special_tokens=False).ids:
            found.append(text)
    return found[:limit]


def oracle_strings(n_generated, extra):
    rng = random.Random(1)
    seen, out = set(), []
    for t in fixed_strings() + extra + generated_strings(rng, n_generated):
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


def expected(tok, text):
    ids = tok.encode(text, add_special_tokens=False).ids
    return {"ids": ids, "ids_special": tok.encode(text, add_special_tokens=True).ids,
            "decoded": tok.decode(ids, skip_special_tokens=False),
            "decoded_skip_special": tok.decode(ids, skip_special_tokens=True)}


def decode_only(name, tok, rng, n=60):
    v = tok.get_vocab_size(with_added_tokens=True)
    rows = []
    for _ in range(n):
        ids = [rng.randrange(v) for _ in range(rng.randint(1, 8))]
        rows.append({"tokenizer": name, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False),
                     "decoded_skip_special": tok.decode(ids, skip_special_tokens=True)})
    return rows


def dump_line(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"


def speed(toks, texts):
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    res = {}
    for name, tok in toks.items():
        for t in texts:          # warm-up (and the BPE cache), not timed
            tok.encode(t)
        t0 = time.perf_counter()
        for _ in range(SPEED_REPEATS):
            for t in texts:
                tok.encode(t)
        dt = time.perf_counter() - t0
        res[name] = {"us_per_string": round(dt / (SPEED_REPEATS * len(texts)) * 1e6, 3),
                     "MB_per_s": round(SPEED_REPEATS * nbytes / dt / 1e6, 3), "seconds": round(dt, 3)}
        print(f"speed {name}: {res[name]['us_per_string']} us/string, {res[name]['MB_per_s']} MB/s")
    return {"what": f"Tokenizer.encode(text) (add_special_tokens=True) in a Python loop over corpus.jsonl's "
                    f"{len(texts)} strings ({nbytes} UTF-8 bytes), {SPEED_REPEATS} times, after one untimed pass; "
                    f"RAYON_NUM_THREADS=1, TOKENIZERS_PARALLELISM=false; includes Python call overhead",
            "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                        "cpus": os.cpu_count()},
            "versions": versions(), "results": res}


def speed_against_keel(out, keel, rounds=3):
    """Both tokenizers in one run, on the fixture corpus: per tokenizer, `rounds` alternating
    rounds of the library's loop (as in speed()) and `keel tokenize --bench` (the same loop in
    Swift, timed inside the process), the best round of each kept."""
    import subprocess
    corpus = os.path.join(out, "corpus.jsonl")
    with open(corpus, encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    print(f"{len(texts)} strings, {nbytes} bytes, {SPEED_REPEATS} passes per round, best of {rounds} rounds, one thread each")
    print(f"{'tokenizer':14s} {'tokenizers us/str':>18s} {'keel us/str':>12s} {'keel speed-up':>14s}")
    for name in BUILDERS:
        tok = Tokenizer.from_file(os.path.join(out, name, "tokenizer.json"))
        lib, kl = [], []
        for _ in range(rounds):
            for t in texts:
                tok.encode(t)
            t0 = time.perf_counter()
            for _ in range(SPEED_REPEATS):
                for t in texts:
                    tok.encode(t)
            lib.append((time.perf_counter() - t0) / (SPEED_REPEATS * len(texts)) * 1e6)
            r = subprocess.run([keel, "tokenize", "--tokenizer", os.path.join(out, name), "--bench", corpus,
                                "--repeat", str(SPEED_REPEATS), "--json"], capture_output=True, text=True, check=True)
            kl.append(json.loads(r.stdout.strip().splitlines()[-1])["us_per_string"])
        print(f"{name:14s} {min(lib):18.2f} {min(kl):12.2f} {min(lib) / min(kl):13.2f}x")


def versions():
    return {"tokenizers": tokenizers.__version__, "python": platform.python_version()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "Tests", "Fixtures", "tokenizers"))
    ap.add_argument("--strings", type=int, default=1780, help="generated oracle strings (besides the fixed ones)")
    ap.add_argument("--no-speed", action="store_true", help="skip the timing (speed.json is left as it is)")
    ap.add_argument("--speed-against-keel", metavar="KEEL", help="time the library and `KEEL tokenize --bench` on the existing fixtures in one run, and exit")
    a = ap.parse_args()
    if a.speed_against_keel:
        speed_against_keel(os.path.normpath(a.out), a.speed_against_keel)
        return
    if tokenizers.__version__ != PINNED:
        print(f"warning: tokenizers {tokenizers.__version__}, the fixtures were made with {PINNED}", file=sys.stderr)
    out = os.path.normpath(a.out)
    os.makedirs(out, exist_ok=True)
    corpus = training_corpus()

    toks = {}
    for name, build in BUILDERS.items():
        d = os.path.join(out, name)
        if os.path.exists(d):
            shutil.rmtree(d)
        os.makedirs(d)
        tok, cfg, gen, patch = build(corpus)
        path = os.path.join(d, "tokenizer.json")
        tok.save(path)
        if patch is not None:
            before = [tok.encode(t).ids for t in corpus[:500]]
            with open(path, encoding="utf-8") as f:
                spec = patch(json.load(f))
            with open(path, "w", encoding="utf-8") as f:
                f.write(json.dumps(spec, indent=2, ensure_ascii=False) + "\n")
            assert [Tokenizer.from_file(path).encode(t).ids for t in corpus[:500]] == before, f"{name}: patch changed encodings"
        with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            f.write(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
        if gen is not None:
            with open(os.path.join(d, "generation_config.json"), "w", encoding="utf-8") as f:
                f.write(json.dumps(gen, indent=2) + "\n")
        toks[name] = Tokenizer.from_file(path)   # the expectations come from what is on disk
        print(f"{name}: vocab {toks[name].get_vocab_size(with_added_tokens=False)} "
              f"(+ added: {toks[name].get_vocab_size(with_added_tokens=True)}), {os.path.getsize(path)} bytes")

    extra = ignore_merges_strings(os.path.join(out, "llama3-bpe", "tokenizer.json"))
    print(f"llama3-bpe: {len(extra)} vocabulary strings where ignore_merges changes the encoding")
    texts = oracle_strings(a.strings, extra)
    with open(os.path.join(out, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for t in texts:
            f.write(dump_line({"text": t, "expected": {name: expected(tok, t) for name, tok in toks.items()}}))
    # sanity: byte-level tokenizers round-trip every text (up to NFC for qwen2 and added-token decoding quirks)
    for name in ("gpt2-bpe", "llama3-bpe"):
        bad = [t for t in texts if toks[name].decode(toks[name].encode(t, add_special_tokens=False).ids,
                                                     skip_special_tokens=False) != t
               and "café" not in t and "<mask>" not in t]
        assert not bad, (name, bad[:5])
    bad = [t for t in texts if toks["qwen2-bpe"].decode(toks["qwen2-bpe"].encode(t, add_special_tokens=False).ids,
                                                        skip_special_tokens=False) != unicodedata.normalize("NFC", t) and "<tool call>" not in t]
    # (NFC is applied to the pieces between added tokens, so a combining mark right after one stays put)
    print(f"qwen2-bpe: {len(bad)} texts whose decode is not NFC(text)")
    rng = random.Random(2)
    with open(os.path.join(out, "decode_only.jsonl"), "w", encoding="utf-8") as f:
        for name, tok in toks.items():
            for row in decode_only(name, tok, rng):
                f.write(dump_line(row))
    with open(os.path.join(out, "versions.json"), "w") as f:
        f.write(json.dumps(versions(), indent=2) + "\n")
    print(f"corpus.jsonl: {len(texts)} strings")
    if not a.no_speed:
        with open(os.path.join(out, "speed.json"), "w") as f:
            f.write(json.dumps(speed(toks, texts), indent=2) + "\n")
    total = sum(os.path.getsize(os.path.join(r, fn)) for r, _, fs in os.walk(out) for fn in fs)
    print(f"total {total} bytes; versions {versions()}")


if __name__ == "__main__":
    main()
