"""A tiny BERT (hidden size 8) saved by transformers, in a Hugging Face cache layout or as a
plain folder: what ``load_hf_model`` and the lazy loaders read, without the network."""

from __future__ import annotations

from pathlib import Path

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "plug", "host"]
REVISION = "0123456789abcdef0123456789abcdef01234567"


def save_tiny_bert(folder: Path) -> Path:
    """config.json, model.safetensors and a WordPiece tokenizer in ``folder``."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=8, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=16, max_position_embeddings=32)
    folder.mkdir(parents=True, exist_ok=True)
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n")
    BertTokenizer(str(vocab)).save_pretrained(folder)
    return folder


def build_hf_cache(cache: Path, hf_model_id: str) -> Path:
    """``cache/models--org--name/{refs/main, snapshots/<rev>/...}``; returns the snapshot."""
    repo = cache / ("models--" + hf_model_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(REVISION)
    return save_tiny_bert(repo / "snapshots" / REVISION)
