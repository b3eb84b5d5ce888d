#!/usr/bin/env python3
"""Tiny DeepSeek-style tokenizer and outside-oracle tokenizer goldens, from Hugging Face tokenizers.

Writes (CI and the product only read the committed files; nothing needs `tokenizers`):
  model/assets/tokenizer-tiny.json      byte-level BPE, exactly 4096 ids, bos 0, eos 1, the V4
                                        chat markers as non-special added tokens at the top ids
  tests/data/tokenizer_goldens.json     ids and decodes produced by `tokenizers` itself
  model/tokenizer_unicode_tables.h      the code points Oniguruma (the regex engine inside
                                        `tokenizers`) puts in \\p{L,M,N,P,S} that PCRE2 10.42
                                        (Unicode 14) does not, and Oniguruma's \\s set

Steps
  1. Refuse to run unless `tokenizers` is the pinned version (--force overrides; the version
     used is recorded in the goldens).
  2. Corpus: the sorted *.py files of this machine's Python standard library
     (/usr/lib/python3.11, PSF licence; their sha256 is recorded) plus the hand-written
     multilingual lines in EXTRA_LINES (CJK, Korean, emoji, other scripts), so merges inside
     multi-byte characters exist. No chat marker appears in the corpus.
  3. Train BPE with the DeepSeek-V3 pre-tokenizer: Split(\\p{N}{1,3}) Isolated,
     Split(CJK runs) Isolated, Split(letters/punctuation/whitespace rules) Isolated, then
     ByteLevel(add_prefix_space=false, use_regex=false); ByteLevel decoder; TemplateProcessing
     "bos $A" post-processor (as DeepSeek-V3's tokenizer.json). The three regex strings are
     data copied from DeepSeek-V3's tokenizer.json (the same strings llama.cpp lists for its
     DEEPSEEK3_LLM pre-tokenizer). Trained vocabulary 4096 - 12, then 12 non-special added
     tokens -> exactly 4096.
  4. Goldens: for every case, `tokenizers` encode (add_special_tokens=False) and decode
     (skip_special_tokens=False); a few with add_special_tokens=True; decode-only cases with
     skip_special_tokens; pre-tokenizer variants (every Split behaviour, invert, String
     patterns, ByteLevel with use_regex / add_prefix_space) and model variants (ignore_merges;
     a byte with no vocabulary entry: dropped, unk_token, fused unk_token).

Invalid UTF-8. `tokenizers` only takes str: bytes raise TypeError, and a str holding lone
surrogates (Python's surrogateescape) raises TypeError too (checked below and recorded). Our
encoder takes bytes and defines: the input is cut into maximal valid UTF-8 runs and maximal
runs of bytes that start no valid character (Unicode Table 3-7 well-formedness); each valid
run is encoded exactly as `tokenizers` encodes it alone; each invalid run is one pre-token
that goes through the BPE model as its bytes. The goldens for invalid inputs are built that
way from `tokenizers` pieces: Tokenizer.encode(valid run) and Tokenizer.model.tokenize(the
run's bytes in the GPT-2 byte-to-unicode alphabet). decode() returns raw bytes, so it gives
the input back; `tokenizers` decode would put U+FFFD there (recorded as hf_decoded_hex).

Run: python3 tests/oracle/gen_tokenizer_goldens.py [--force]
"""
import argparse
import hashlib
import json
import os
import sys
import unicodedata

PINNED_TOKENIZERS = "0.23.3"  # pip install tokenizers==0.23.3
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_TOKENIZER = os.path.join(ROOT, "model", "assets", "tokenizer-tiny.json")
OUT_GOLDENS = os.path.join(ROOT, "tests", "data", "tokenizer_goldens.json")
OUT_TABLES = os.path.join(ROOT, "model", "tokenizer_unicode_tables.h")
STDLIB = "/usr/lib/python3.11"

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
# Non-special added tokens of DeepSeek-V4's chat encoding (encoding_dsv4.py: role markers,
# thinking markers, the DSML tool-call marker, the reminder and the task tokens).
CHAT_TOKENS = ["<｜User｜>", "<｜Assistant｜>", "<think>", "</think>", "｜DSML｜",
               "<｜latest_reminder｜>", "<｜action｜>", "<｜query｜>", "<｜authority｜>",
               "<｜domain｜>", "<｜title｜>", "<｜read_url｜>"]
VOCAB = 4096

# DeepSeek-V3 tokenizer.json pre_tokenizer regexes (data).
RE_DIGITS = r"\p{N}{1,3}"
RE_CJK = "[一-龥\u3040-ゟ゠-ヿ]+"
RE_MAIN = ("[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?"
           "[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+")

EXTRA_LINES = [
    "深度求索是一家专注于人工智能基础技术研究的公司。我们今天讨论分词器的实现，包括中文、日文和韩文。",
    "模型在长上下文中检索信息的能力，需要高效的注意力机制和稳定的数值计算。",
    "东京是日本的首都。トークナイザーはテキストを小さな単位に分割します。ひらがなとカタカナ。",
    "今日はいい天気ですね。明日の会議は午後三時からです。よろしくお願いします。",
    "안녕하세요, 세계! 토크나이저 테스트입니다. 한국어 문장은 띄어쓰기를 사용합니다.",
    "Привет, мир! Это тест токенизатора. Γειά σου κόσμε. مرحبا بالعالم. שלום עולם.",
    "नमस्ते दुनिया। สวัสดีชาวโลก Xin chào thế giới. Ça va? Größe, Straße, naïve café.",
    "Emoji: 😀😃😄😁 👍🏽 ❤️ 🎉🎉 🚀 👨‍👩‍👧‍👦 🏳️‍🌈 🇯🇵🇺🇸 ✅ ❌ ⭐ 🔥",
    "Numbers: 1,234,567.89 3.14159 2024-06-01 12:30:45 0x1F 1e-10 ½ ¾ １２３ ١٢٣",
]


def check_version(force):
    import tokenizers
    v = tokenizers.__version__
    if v != PINNED_TOKENIZERS and not force:
        sys.exit(f"tokenizers {v} installed, {PINNED_TOKENIZERS} pinned (use --force to override)")
    return v


def corpus():
    files = sorted(f for f in os.listdir(STDLIB) if f.endswith(".py"))
    h = hashlib.sha256()
    lines = []
    for f in files:
        data = open(os.path.join(STDLIB, f), "rb").read()
        h.update(f.encode() + b"\0" + data)
        lines.extend(data.decode("utf-8", "replace").splitlines(keepends=True))
    for _ in range(200):
        lines.extend(x + "\n" for x in EXTRA_LINES)
    for t in CHAT_TOKENS + [BOS, EOS]:
        assert not any(t in x for x in lines), t
    return lines, {"dir": STDLIB, "files": len(files), "sha256": h.hexdigest()}


def deepseek_pre_tokenizer():
    from tokenizers import Regex
    from tokenizers import pre_tokenizers as P
    return P.Sequence([
        P.Split(Regex(RE_DIGITS), behavior="isolated", invert=False),
        P.Split(Regex(RE_CJK), behavior="isolated", invert=False),
        P.Split(Regex(RE_MAIN), behavior="isolated", invert=False),
        P.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])


def train(lines):
    from tokenizers import AddedToken, Tokenizer, decoders, models, processors, trainers
    from tokenizers import pre_tokenizers as P
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = deepseek_pre_tokenizer()
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB - len(CHAT_TOKENS), special_tokens=[BOS, EOS],
                                  initial_alphabet=P.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(lines, trainer)
    assert tok.get_vocab_size() == VOCAB - len(CHAT_TOKENS), tok.get_vocab_size()
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in CHAT_TOKENS])
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B",
                                                       special_tokens=[(BOS, 0)])
    assert tok.get_vocab_size() == VOCAB, tok.get_vocab_size()
    assert tok.token_to_id(BOS) == 0 and tok.token_to_id(EOS) == 1
    for i, t in enumerate(CHAT_TOKENS):
        assert tok.token_to_id(t) == VOCAB - len(CHAT_TOKENS) + i, t
    return tok


# ---- UTF-8 segmentation (the rule our encoder uses for invalid input) ----

def utf8_char_len(b, i):
    """Length of the well-formed UTF-8 character at b[i] (Unicode Table 3-7), 0 if none."""
    c = b[i]
    n = len(b) - i
    cont = lambda k, lo=0x80, hi=0xBF: k < n and lo <= b[i + k] <= hi
    if c < 0x80:
        return 1
    if 0xC2 <= c <= 0xDF:
        return 2 if cont(1) else 0
    if 0xE0 <= c <= 0xEF:
        lo, hi = (0xA0, 0xBF) if c == 0xE0 else (0x80, 0x9F) if c == 0xED else (0x80, 0xBF)
        return 3 if cont(1, lo, hi) and cont(2) else 0
    if 0xF0 <= c <= 0xF4:
        lo, hi = (0x90, 0xBF) if c == 0xF0 else (0x80, 0x8F) if c == 0xF4 else (0x80, 0xBF)
        return 4 if cont(1, lo, hi) and cont(2) and cont(3) else 0
    return 0


def segments(b):
    """[(is_valid, bytes)] maximal runs."""
    out, i = [], 0
    while i < len(b):
        n = utf8_char_len(b, i)
        valid = n > 0
        step = n if valid else 1
        if out and out[-1][0] == valid:
            out[-1][1].extend(b[i:i + step])
        else:
            out.append((valid, bytearray(b[i:i + step])))
        i += step
    return [(v, bytes(s)) for v, s in out]


def byte_to_unicode():
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    m, extra = {}, 0
    for b in range(256):
        if b in keep:
            m[b] = chr(b)
        else:
            m[b] = chr(256 + extra)
            extra += 1
    return m


def encode_bytes(tok, b):
    b2u = byte_to_unicode()
    ids = []
    for valid, seg in segments(b):
        if valid:
            ids += tok.encode(seg.decode("utf-8"), add_special_tokens=False).ids
        else:
            ids += [t.id for t in tok.model.tokenize("".join(b2u[x] for x in seg))]
    return ids


# ---- cases ----

def text_cases():
    cases = []
    add = lambda name, s: cases.append((name, s.encode("utf-8") if isinstance(s, str) else s))
    add("empty", "")
    add("ascii_prose", "The quick brown fox jumps over the lazy dog. It's 5 o'clock; isn't it? "
        "\"Quoted,\" she said -- well-known facts (mostly) [citation needed].")
    add("ascii_printable", "".join(chr(c) for c in range(0x20, 0x7F)))
    add("contractions", "I'm you're we've they'll she'd it's DON'T Won't o'clock 's 't")
    add("punct_rules", ".abc ,def !x ?Yz (a) [b] {c} a.b a..b ...\n\n!!!???\r\n--> <= >= != == ;;")
    add("url_email", "See https://example.com/path/to?x=1&y=two#frag or mail a.b+c@example.org; @user #tag $100 50% C++ C# .NET")
    add("python_code", "def encode(self, text: str) -> list[int]:\n    \"\"\"Encode text.\"\"\"\n"
        "    if not text:\n        return []\n    ids = [self.vocab[t] for t in text.split()]  # comment\n"
        "    return ids\n\n\nclass Foo(Bar):\n\tpass\n")
    add("cpp_code", "#include <vector>\n\nint main(int argc, char** argv) {\n\tstd::vector<int> v{1, 2, 3};\n"
        "\tfor (auto& x : v) x <<= 2;\n\t\tif (a->b && !c) { /* comment */ }\n"
        "    return 0;                                        // long run\n}\n")
    add("whitespace_long", " " * 200 + "x" + "\t" * 50 + "y" + " \t" * 30 + "\n" * 40 + "z")
    add("chinese", "深度求索是一家专注于人工智能的公司。我们今天讨论分词器，包括中文、日文和韩文！")
    add("japanese", "東京は日本の首都です。トークナイザーはテキストを分割します。ｶﾀｶﾅ（半角）とひらがな。")
    add("korean", "안녕하세요, 세계! 토크나이저 테스트입니다. ㄱㄴㄷ 한글")
    add("cjk_rare", "𠀀𠀁 龦 㐀 〇 々 ー 〜 「引用」『二重』【括弧】")
    add("emoji", "👍🏽 ❤️ 👨‍👩‍👧‍👦 🏳️‍🌈 🇯🇵 😀😃😄 1️⃣ ©️ a😀b")
    add("emoji_new_unicode", "🩷 🫨 🫎 🪿 🫩 🩷abc x🫨y")
    for n in range(1, 13):
        add(f"digits_{n}", "1234567890123"[:n])
    add("digit_line", " ".join("9876543210987"[:n] for n in range(1, 13)))
    add("number_formats", "1,234,567.89 3.14159 -42 +7 1e10 0x1F 2024-06-01 12:30:45 v1.2.3 $19.99 100%")
    add("unicode_numbers", "١٢٣٤٥ ۱۲۳ ১২৩ Ⅻ ½¾ １２３４ ²³ ⑩ 四五六")
    add("mixed_scripts", "Hello мир 世界 مرحبا שלום नमस्ते Γειά σου สวัสดี ভাষা ქართული abc日本語def123")
    add("combining_marks", "e\u0301 a\u0308 n\u0303 \u0301alone Z\u0351\u0334\u0324a\u0300\u0301lgo ก\u0e31 क\u094d\u0937")
    add("ws_basic", "a b  c   d\te\t\tf\ng\n\nh\r\ni\r\n\r\nj")
    add("ws_newlines", "\n\n\n\n\n\n\n\nend\n")
    add("ws_crlf", "line1\r\nline2\r\n\r\n\r\nline3\r")
    add("ws_edges", "   leading and trailing   ")
    add("ws_unicode", "a\u00a0b\u3000c\u2028d\u2029e\u0085f\u180eg\u200bh\u000bi\u000cj\u001ck\u205fl\u1680m")
    add("ws_mixed_runs", "x \t \n \t \r\n  \n\t y")
    add("controls", "a\x00b\x01c\x7fd\x1be[0m\ufeffBOM\u200dzwj")
    add("special_bos_eos", f"{BOS}Hello{EOS}")
    add("special_chat", "<｜User｜>hi<｜Assistant｜><think>hmm</think>ok<｜end▁of▁sentence｜>")
    add("special_adjacent", "<think></think><think><｜User｜><｜User｜>" + BOS + BOS)
    add("special_partial", "<｜User <thinking> </think <｜Assistant｜ think> ｜DSML ｜User｜")
    add("special_in_words", "abc<think>def ghi</think>jkl 12<｜User｜>34")
    add("special_dsml", "<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
        "<｜DSML｜parameter name=\"city\" string=\"true\">Paris</｜DSML｜parameter>\n</｜DSML｜invoke>")
    add("special_all", "".join([BOS, EOS] + CHAT_TOKENS))
    add("special_with_ws", "  <think>  \n</think>\n\n<｜User｜> x ")
    add("long_word_a", "a" * 500)
    add("long_word_ab", "ab" * 300)
    add("long_word_the", "the" * 100)
    add("long_word_mix", "internationalization" * 12 + "Deserialization" * 5)
    add("long_chinese", ("人工智能的研究" * 80))
    add("long_punct", "=" * 300 + "-" * 77)
    mixed = []
    for i in range(60):
        mixed.append(f"Line {i}: the value of x_{i} is {i * 7919 % 10007}; 深度{i} — done.\n")
        if i % 7 == 0:
            mixed.append("    def f(a, b):\n\t\treturn a ** b  # power\n")
    add("long_mixed", "".join(mixed))
    # Random code points from many blocks and every plane (unassigned ones too), seeded: the
    # Unicode classes of the regexes across the whole range.
    import random
    rng = random.Random(20240601)
    blocks = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF), (0x900, 0x97F),
              (0xE00, 0xE7F), (0x1680, 0x18AF), (0x2000, 0x206F), (0x3000, 0x30FF), (0x4E00, 0x9FFF),
              (0xAC00, 0xD7A3), (0xFF00, 0xFFEF), (0x1F300, 0x1FAFF), (0x10000, 0x10FFFF), (0x0, 0x1F)]
    words = []
    for _ in range(600):
        a, b = rng.choice(blocks)
        cps = (rng.randint(a, b) for _ in range(rng.randint(1, 8)))
        words.append("".join(chr(c) for c in cps if not 0xD800 <= c <= 0xDFFF)
                     + rng.choice([" ", "", "\n", "  ", "\t", "\r\n", " 123 ", ".", ", "]))
    add("random_unicode", "".join(words))
    # Invalid UTF-8 (bytes).
    add("bad_ff", b"\xff")
    add("bad_truncated_2", b"\xc3")
    add("bad_truncated_3", b"\xe4\xb8")
    add("bad_inside_ascii", b"abc\xffdef")
    add("bad_surrogate", b"\xed\xa0\x80x")
    add("bad_overlong", b"\xc0\xaf\xe0\x80\xaf")
    add("bad_above_max", b"\xf4\x90\x80\x80")
    add("bad_continuations", b"\x80\x80\x80\xbf")
    add("bad_mixed", b"Hello \xff\xfe world <\xe2\x80\xa8> \xe4\xb8\xad\xe4\xb8 end")
    add("bad_around_special", b"\xff<think>\xfe</think>\xc3")
    add("bad_in_whitespace", b"  \xff  \n\xfe\n")
    add("bad_in_digits", b"12\xff345\xfe6789")
    add("bad_cut_emoji", "😀".encode()[:3] + b"ok" + "👍".encode()[1:])
    return cases


VARIANTS = [
    # name, pre_tokenizer builder (tokenizers objects), inputs
    ("split_removed_digits", lambda P, R: P.Sequence([P.Split(R(r"\d+"), "removed"), P.ByteLevel(False, use_regex=False)])),
    ("split_merged_prev_ws", lambda P, R: P.Sequence([P.Split(R(r"\s+"), "merged_with_previous"), P.ByteLevel(False, use_regex=False)])),
    ("split_merged_next_ws", lambda P, R: P.Sequence([P.Split(R(r"\s+"), "merged_with_next"), P.ByteLevel(False, use_regex=False)])),
    ("split_contiguous_vowels", lambda P, R: P.Sequence([P.Split(R(r"[aeiou]"), "contiguous"), P.ByteLevel(False, use_regex=False)])),
    ("split_invert_letters", lambda P, R: P.Sequence([P.Split(R(r"\p{L}+"), "isolated", invert=True), P.ByteLevel(False, use_regex=False)])),
    ("split_string_dot", lambda P, R: P.Sequence([P.Split(".", "isolated"), P.Split(" ", "removed"), P.ByteLevel(False, use_regex=False)])),
    ("bytelevel_gpt2", lambda P, R: P.ByteLevel(add_prefix_space=False, use_regex=True)),
    ("bytelevel_prefix_space", lambda P, R: P.ByteLevel(add_prefix_space=True, use_regex=True)),
    ("split_then_prefix_space", lambda P, R: P.Sequence([P.Split(R(r"\p{N}+"), "isolated"), P.ByteLevel(add_prefix_space=True, use_regex=False)])),
]
VARIANT_INPUTS = ["Hello world, it's 2024!  Two  spaces\tand\ttabs\n\nnew lines",
                  "aeiou queue  beautiful 123abc456 x.y.z end.",
                  "深度求索 123 ünïcödé  ça   va ",
                  " leading space", "", "....", "   "]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    version = check_version(args.force)
    from tokenizers import Regex, Tokenizer
    from tokenizers import pre_tokenizers as P

    lines, corpus_info = corpus()
    tok = train(lines)
    tok2 = train(lines)
    assert tok.to_str() == tok2.to_str(), "training is not deterministic"
    os.makedirs(os.path.dirname(OUT_TOKENIZER), exist_ok=True)
    tok.save(OUT_TOKENIZER, pretty=True)
    tok = Tokenizer.from_file(OUT_TOKENIZER)  # goldens from the file as written
    spec = json.load(open(OUT_TOKENIZER, encoding="utf-8"))

    notes = {}
    for label, arg in [("bytes", b"\xff"), ("surrogateescape_str", b"a\xffb".decode("utf-8", "surrogateescape"))]:
        try:
            tok.encode(arg)
            notes[label] = "accepted"
        except Exception as e:  # noqa: BLE001
            notes[label] = f"{type(e).__name__}: {e}"

    cases = []
    for name, b in text_cases():
        valid = all(v for v, _ in segments(b))
        if valid:
            s = b.decode("utf-8")
            ids = tok.encode(s, add_special_tokens=False).ids
            # a valid string is also one segment of the invalid-input rule
            assert ids == encode_bytes(tok, b)
            dec = tok.decode(ids, skip_special_tokens=False)
            assert dec == s, name
            cases.append({"name": name, "hex": b.hex(), "text": s, "ids": ids, "decoded_hex": dec.encode().hex()})
        else:
            ids = encode_bytes(tok, b)
            hf = tok.decode(ids, skip_special_tokens=False)
            cases.append({"name": name, "hex": b.hex(), "ids": ids, "decoded_hex": b.hex(),
                          "hf_decoded_hex": hf.encode().hex()})

    special_cases = []
    for s in ["Hello world", "", f"{BOS}already", "<｜User｜>hi<｜Assistant｜>"]:
        special_cases.append({"hex": s.encode().hex(), "ids": tok.encode(s, add_special_tokens=True).ids})

    decode_cases = []
    chat = f"{BOS}<｜User｜>hi<｜Assistant｜><think>x</think>yo{EOS}"
    ids = tok.encode(chat, add_special_tokens=False).ids
    for skip in (False, True):
        decode_cases.append({"ids": ids, "skip_special": skip,
                             "hex": tok.decode(ids, skip_special_tokens=skip).encode().hex()})
    # unknown ids are dropped by tokenizers' decode
    decode_cases.append({"ids": [VOCAB + 5, ids[1], 1 << 30], "skip_special": False,
                         "hex": tok.decode([VOCAB + 5, ids[1], 1 << 30], skip_special_tokens=False).encode().hex()})

    variants = []
    for name, build in VARIANTS:
        t = Tokenizer.from_str(tok.to_str())
        t.pre_tokenizer = build(P, Regex)
        pre = json.loads(t.to_str())["pre_tokenizer"]
        vc = [{"hex": s.encode().hex(), "ids": t.encode(s, add_special_tokens=False).ids} for s in VARIANT_INPUTS]
        variants.append({"name": name, "pre_tokenizer": pre, "cases": vc})

    model_variants = []
    j = json.loads(tok.to_str())
    j["model"]["ignore_merges"] = True
    t = Tokenizer.from_str(json.dumps(j))
    inputs = [c["text"] for c in cases if "text" in c and len(c["text"]) < 400]
    model_variants.append({"name": "ignore_merges", "model_patch": {"ignore_merges": True},
                           "cases": [{"hex": s.encode().hex(), "ids": t.encode(s, add_special_tokens=False).ids}
                                     for s in inputs]})

    # A byte with no vocabulary entry (a byte no merge uses, removed): tokenizers drops it, or
    # emits unk_token (fused runs with fuse_unk).
    b2u = byte_to_unicode()
    used = {x for a, b in j["model"]["merges"] for x in (a, b, a + b)}
    hole = next(b for b in range(256) if b2u[b] not in used)
    hole_inputs = [f"a{chr(hole)}b", chr(hole) * 3, f"x{chr(hole) * 3} y{chr(hole)}", "plain text"]
    for name, patch in [("missing_byte", {}), ("missing_byte_unk", {"unk_token": "!"}),
                        ("missing_byte_unk_fused", {"unk_token": "!", "fuse_unk": True})]:
        jj = json.loads(tok.to_str())
        del jj["model"]["vocab"][b2u[hole]]
        jj["model"].update(patch)
        t = Tokenizer.from_str(json.dumps(jj))
        model_variants.append({"name": name, "model_patch": dict(patch, vocab_remove=[b2u[hole]]),
                               "cases": [{"hex": s.encode().hex(), "ids": t.encode(s, add_special_tokens=False).ids}
                                         for s in hole_inputs]})

    goldens = {
        "generator": "tests/oracle/gen_tokenizer_goldens.py",
        "tokenizers_version": version,
        "tokenizer": "model/assets/tokenizer-tiny.json",
        "tokenizer_sha256": hashlib.sha256(open(OUT_TOKENIZER, "rb").read()).hexdigest(),
        "corpus": corpus_info,
        "invalid_utf8_in_tokenizers": notes,
        "cases": cases,
        "special_cases": special_cases,
        "decode_cases": decode_cases,
        "pre_tokenizer_variants": variants,
        "model_variants": model_variants,
    }
    with open(OUT_GOLDENS, "w", encoding="utf-8") as f:
        json.dump(goldens, f, ensure_ascii=False, indent=None, separators=(",", ":"))
        f.write("\n")
    write_unicode_tables(version)
    print(f"vocab {tok.get_vocab_size()}, {len(cases)} cases, {len(variants)} pre-tokenizer variants; "
          f"merges stored as {type(spec['model']['merges'][0]).__name__}")


def write_unicode_tables(version):
    """Code points Oniguruma (inside tokenizers) classifies as \\p{X} that Unicode 14 (PCRE2 10.42's
    tables, equal to Python 3.11's unicodedata) does not. No code point goes the other way
    (asserted), so our patterns use [\\p{X}<extra>]. \\s is Oniguruma's full set."""
    from tokenizers import Regex
    from tokenizers import pre_tokenizers as P
    assert unicodedata.unidata_version == "14.0.0", unicodedata.unidata_version
    cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    text = "".join(map(chr, cps))

    def onig_set(pat):
        kept = bytearray(len(cps))
        for _, (a, b) in P.Split(Regex(pat), behavior="removed").pre_tokenize_str(text):
            kept[a:b] = b"\1" * (b - a)
        return {cps[i] for i in range(len(cps)) if not kept[i]}

    def ranges(s):
        out = []
        for c in sorted(s):
            if out and out[-1][1] == c - 1:
                out[-1][1] = c
            else:
                out.append([c, c])
        return out

    lines = ["// GENERATED by tests/oracle/gen_tokenizer_goldens.py -- do not edit.",
             f"// tokenizers {version} (Oniguruma) vs Unicode {unicodedata.unidata_version} (PCRE2 10.42 tables).",
             "// Code points in Oniguruma's \\p{X} missing from Unicode 14's general category X, and",
             "// Oniguruma's \\s. Included once, by model/tokenizer_pretok.cc.",
             "#pragma once", "#include <cstdint>", "", "namespace dsv4::tokenizer_tables {", "",
             "struct CodeRange { uint32_t lo, hi; };", ""]
    for cat in "LMNPS":
        onig = onig_set(r"\p{" + cat + "}")
        uni = {c for c in cps if unicodedata.category(chr(c))[0] == cat}
        assert not (uni - onig), (cat, sorted(uni - onig)[:10])
        rs = ranges(onig - uni)
        lines.append(f"inline constexpr CodeRange kExtra{cat}[] = {{")
        lines += [f"    {{0x{a:X}, 0x{b:X}}}," for a, b in rs] or ["    {0x110000, 0x110000},  // none"]
        lines += ["};", ""]
    rs = ranges(onig_set(r"\s"))
    lines.append("inline constexpr CodeRange kSpace[] = {")
    lines += [f"    {{0x{a:X}, 0x{b:X}}}," for a, b in rs]
    lines += ["};", "", "}  // namespace dsv4::tokenizer_tables", ""]
    with open(OUT_TABLES, "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
