# One image for both tiers; the command picks the tier. The CPU build of torch by
# default; build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126
# for a GPU tier (docker-compose.yml does so for tier2).
FROM python:3.11-slim
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 TRANSFORMERS_VERBOSITY=error
RUN pip install --index-url "${TORCH_INDEX}" torch==2.13.0
WORKDIR /app
COPY setup.cfg pyproject.toml README.md run_tango.py ./
COPY common ./common
COPY cli ./cli
COPY tier1_worker ./tier1_worker
COPY tier2_worker ./tier2_worker
RUN pip install . && useradd --create-home tango
USER tango
ENTRYPOINT ["tango"]
CMD ["--help"]
