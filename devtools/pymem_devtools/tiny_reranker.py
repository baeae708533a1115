"""A local stand-in for ``cross-encoder/ms-marco-TinyBERT-L2-v2``, for tests and benchmarks.

This machine has no model hub, so tests and benchmarks build a cross-encoder of the
*same architecture* (BERT, 2 layers, hidden 128, 2 heads, intermediate 512, vocab
30522, one output logit) with seeded random weights, plus a WordPiece tokenizer made
here from a deterministic vocabulary. The directory it writes looks like a Hugging
Face checkpoint, so it goes through the real export code (:mod:`pymem.onnx_export`)
exactly like the real model would. Latency depends only on the shapes, and ONNX vs
PyTorch parity on the same weights is a real correctness check; the *scores* mean
nothing.

torch and transformers are imported inside the functions: importing this module is
cheap and never pulls them in.
"""

from __future__ import annotations

import itertools
import string
from pathlib import Path

#: The architecture of ms-marco-TinyBERT-L2-v2 (its config.json on the hub).
TINYBERT_L2_CONFIG = {
    "vocab_size": 30522,
    "hidden_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 512,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "hidden_act": "gelu",
    "num_labels": 1,
    "pad_token_id": 0,
}

# Real words first, so that sample text in tests tokenizes into whole words; the rest
# of the 30522 slots are filled with deterministic letter pairs and triples.
_WORDS = """
the a an and or of to in on for with from by is are was were be been it this that
what which who how why when where do does did can could should would will not no yes
memory memories store stored database postgres vector vectors search query queries
index indexes result results rank ranking reranker rerank model models user users
tenant tenants data document documents text chunk chunks key keys encryption secure
security policy row level access audit log fast slow latency budget circuit breaker
cat cats dog dogs sat mat house car cars city river mountain weather rain sun snow
python rust code program function test tests error errors value values number list
learn learning machine deep neural network networks language paris france capital
""".split()


def build_vocab(size: int = TINYBERT_L2_CONFIG["vocab_size"]) -> list[str]:
    """Return a deterministic WordPiece vocabulary laid out like bert-base-uncased.

    Ids 0-103 match BERT's special tokens ([PAD]=0, [UNK]=100, [CLS]=101, [SEP]=102,
    [MASK]=103), so ``pad_token_id=0`` holds as in the real model.
    """
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = [c for c in string.printable if not c.isspace() and not c.isupper()]
    vocab += chars + ["##" + c for c in chars if c.isalnum()]
    vocab += [w for w in _WORDS if w not in chars]
    seen = set(vocab)
    letters = string.ascii_lowercase
    for n in (2, 3):
        for combo in itertools.product(letters, repeat=n):
            for token in ("".join(combo), "##" + "".join(combo)):
                if len(vocab) == size:
                    return vocab
                if token not in seen:
                    seen.add(token)
                    vocab.append(token)
    raise ValueError(f"cannot fill a vocabulary of {size} tokens")


def build_tokenizer(out_dir: Path):
    """Write a fast BERT tokenizer (``tokenizer.json`` + ``vocab.txt`` ...) to ``out_dir``.

    Returns:
        The ``transformers.BertTokenizerFast`` that was saved.
    """
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    vocab = {token: i for i, token in enumerate(build_vocab())}
    backend = BertWordPieceTokenizer(vocab, lowercase=True)
    tokenizer = BertTokenizerFast(tokenizer_object=backend._tokenizer, model_max_length=512,
                                  do_lower_case=True)
    tokenizer.save_pretrained(str(out_dir))
    return tokenizer


def build_tiny_cross_encoder(out_dir: str | Path, *, seed: int = 0,
                             initializer_range: float = 0.2) -> Path:
    """Write a random-weight TinyBERT-L2-shaped cross-encoder checkpoint to ``out_dir``.

    Args:
        out_dir: directory to create (it may exist; files in it are overwritten).
        seed: torch seed, so the weights, hence the scores, are reproducible.
        initializer_range: std of the random weights. Wider than BERT's 0.02 so the
            logits of different pairs are far apart and rank-order checks are meaningful.

    Returns:
        ``out_dir`` as a Path; it holds ``config.json``, ``model.safetensors`` and the
        tokenizer files, like a checkpoint downloaded from the hub.
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = BertConfig(**TINYBERT_L2_CONFIG, initializer_range=initializer_range,
                        architectures=["BertForSequenceClassification"])
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(str(out))
    build_tokenizer(out)
    return out
