# The sser HTTP service on CPU, built from this package.
#   docker build -t sser-serve .
#   docker run -p 8000:8000 -v /path/to/my_model:/model:ro sser-serve [--quantize int8]
# /model is an exported model folder (sser_model.json + model.safetensors):
# loading reads it as data, and nothing is downloaded at run time.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False

# torch's CPU-only build (the PyPI wheel carries CUDA libraries: ~4 GB more)
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --index-url "$TORCH_INDEX" torch==2.11.0 torchaudio==2.11.0

WORKDIR /opt/sser
COPY setup.py README.md requirements.txt ./
COPY sser_lobes ./sser_lobes
RUN pip install --constraint requirements.txt ".[serve]"

RUN useradd --create-home sser
USER sser
EXPOSE 8000
HEALTHCHECK CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"]
ENTRYPOINT ["sser-serve", "/model", "--host", "0.0.0.0", "--port", "8000"]
