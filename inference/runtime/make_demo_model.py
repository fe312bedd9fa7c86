"""Write the demo model: a tiny Llama with random weights and a small tokenizer.

Runs with the engine runtime's Python (it has torch, tokenizers and
transformers): `manage.py make_demo_model` calls it. Nothing is downloaded.
The model's output is noise by design; it exists so that a machine without a
GPU can run the whole engine pool end to end.

Usage: python make_demo_model.py OUT_DIR [--endless]

--endless: the model has no end-of-sequence token, so every answer runs to its max_tokens (greedy
decoding of random weights otherwise meets the end token at a point that varies with the CPU's
arithmetic). Tests use it for answers that are surely still streaming when they stop them.
"""

import json
import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

out = Path(sys.argv[1])
endless = "--endless" in sys.argv[2:]
out.mkdir(parents=True, exist_ok=True)

tokenizer = Tokenizer(models.BPE())
tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tokenizer.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=["<pad>", "<s>", "</s>"],
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
corpus = ["the engine is ready and the disk is fine", "glmadmin keeps the model serving all night",
          "hello world, this is a demo model whose output is noise"] * 40
tokenizer.train_from_iterator(corpus, trainer)
fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token=None if endless else "</s>",
                               pad_token="<pad>")
fast.chat_template = ("{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                      "{% if add_generation_prompt %}assistant: {% endif %}")
fast.save_pretrained(out)

# head_dim 64: vLLM's CPU attention needs at least 32. 4096 positions: the default max-model-len.
config = LlamaConfig(vocab_size=len(fast), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                     num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                     bos_token_id=1, eos_token_id=None if endless else 2, pad_token_id=0)
config.dtype = "bfloat16"
torch.manual_seed(0)
LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(out)
(out / "DEMO_MODEL.json").write_text(json.dumps(
    {"what": "glmadmin demo model: random weights, output is noise", "made_by": "manage.py make_demo_model"}))
print(out)
