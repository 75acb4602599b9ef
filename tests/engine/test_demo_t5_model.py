"""Quality bars for the shipped demo T5 (lmscope/models/demo_t5), checked with plain transformers.

The held-out pairs come with the model (heldout.jsonl, made by scripts/train_demo_t5.py from a
seed disjoint from training). Each row: {"en", "de", "align"}, where align[t] is the index of
the English word (as the tokenizer splits words) that German word t translates, or null.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

MODEL_DIR = Path(__file__).resolve().parents[2] / "lmscope" / "models" / "demo_t5"
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def model_and_tokenizer():
    tokenizer = transformers.AutoTokenizer.from_pretrained(MODEL_DIR)
    model = transformers.T5ForConditionalGeneration.from_pretrained(
        MODEL_DIR, attn_implementation="eager"  # only eager returns attention probabilities
    )
    return model.eval(), tokenizer


@pytest.fixture(scope="module")
def heldout() -> list[dict]:
    with open(MODEL_DIR / "heldout.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def generated(model_and_tokenizer, heldout):
    """Greedy outputs and, per decoder layer, the argmax of head-averaged cross-attention.

    Returns:
        list of (encoding, sequences [batch, tgt], peaks [layer, batch, tgt], decoded strings)
        per batch of 100.
    """
    model, tokenizer = model_and_tokenizer
    torch.manual_seed(0)
    out = []
    with torch.no_grad():
        for i in range(0, len(heldout), 100):
            texts = [p["en"] for p in heldout[i : i + 100]]
            enc = tokenizer(texts, return_tensors="pt", padding=True)
            seqs = model.generate(**enc, max_new_tokens=48, do_sample=False)
            attn = model(**enc, decoder_input_ids=seqs, output_attentions=True).cross_attentions
            peaks = torch.stack([a.mean(dim=1).argmax(dim=-1) for a in attn])
            out.append((enc, seqs, peaks, tokenizer.batch_decode(seqs, skip_special_tokens=True)))
    return out


def test_files_and_special_tokens(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id) == (0, 1)
    assert tokenizer.unk_token == "<unk>"
    assert model.config.decoder_start_token_id == model.config.pad_token_id == 0
    assert model.config.eos_token_id == 1
    assert tokenizer("the dog sees the cat")["input_ids"][-1] == 1  # </s> appended, as in T5
    assert model.generation_config.do_sample is False
    assert (MODEL_DIR / "MODEL_CARD.md").is_file()


def test_greedy_exact_match(generated, heldout):
    decoded = [s for *_, batch in generated for s in batch]
    exact = sum(out == p["de"] for out, p in zip(decoded, heldout)) / len(heldout)
    assert exact >= 0.90, exact


def test_cross_attention_peaks_on_aligned_source_word(generated, heldout, model_and_tokenizer):
    """In the best decoder layer, >= 70% of aligned target tokens attend most to their source.

    The cross-attention row at decoder position t (input: start token, y1 .. yt) is the one
    that predicts target token t+1, so row t belongs to German word t. Only exactly translated
    sentences count, since the alignment describes the reference.
    """
    _, tokenizer = model_and_tokenizer
    hits, total = None, 0
    for b0, (enc, seqs, peaks, decoded) in zip(range(0, len(heldout), 100), generated):
        hits = torch.zeros(peaks.shape[0]) if hits is None else hits
        for b, out in enumerate(decoded):
            pair = heldout[b0 + b]
            if out != pair["de"]:
                continue
            target_words = tokenizer(pair["de"]).word_ids()
            source_words = enc.word_ids(b)
            for t, src_word in enumerate(pair["align"]):
                if src_word is None:
                    continue
                assert target_words[t] == t  # one word is one token in this vocabulary
                hits += (peaks[:, b, t] == source_words.index(src_word)).float()
                total += 1
    per_layer = hits / total
    assert total > 1000
    assert per_layer.max() >= 0.70, per_layer.tolist()
