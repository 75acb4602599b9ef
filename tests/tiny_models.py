"""Tiny randomly initialised Llama and T5 models with freshly trained tokenizers, saved to disk.

Built in the test session (no downloads) so the engine's loading path (``from_pretrained`` on
a folder) runs exactly as it does for real checkpoints.
"""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "a debugger shows what the model computes one token at a time",
    "attention heads look back at earlier tokens in the prompt",
    "the cache grows by one position every step",
    "der Hund sieht die Katze und die Katze sieht den Hund",
] * 20


def _tokenizer(special: list[str], vocab_size: int = 300):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, show_progress=False)
    tokenizer.train_from_iterator(CORPUS, trainer)
    return tokenizer


def build_llama(folder: Path, seed: int = 0) -> Path:
    """A 2-layer Llama with grouped-query attention (4 query heads, 2 kv heads)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from tokenizers import processors

    raw = _tokenizer(["<unk>", "<s>", "</s>"])
    raw.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        bos_token_id=1, eos_token_id=2, pad_token_id=None, tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # sharper logits than the default init, so stages differ visibly
        model.lm_head.weight.mul_(30)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_t5(folder: Path, seed: int = 0) -> Path:
    """A 2+2-layer T5 whose decoder starts from ``<pad>`` (id 0) and ends with ``</s>`` (id 1)."""
    import torch
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    raw = _tokenizer(["<pad>", "</s>", "<unk>"])
    raw.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=len(tokenizer), d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2,
        num_heads=4, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    )
    model = T5ForConditionalGeneration(config)
    with torch.no_grad():
        # T5 always ties lm_head to the embeddings: with the default init the decoder start
        # (<pad>) predicts itself forever. Spread the embeddings and shrink <pad>'s row.
        model.shared.weight.normal_(0, 0.3)
        model.shared.weight[0].mul_(0.01)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
