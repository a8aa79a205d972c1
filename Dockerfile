# cbm-airflow image: Apache Airflow 3.3.2 + system GDAL + the project's Python dependencies.
#
# docker-compose.yaml runs every Airflow component from it (the project is mounted at
# /opt/airflow/project at runtime). The project is also copied in, so the image can serve as
# the DockerOperator image cbm-airflow:latest of AOIs with docker.enabled, which runs
# `python -m cbm_ops extract ...` in it.
#
#   docker build -t cbm-airflow:latest .      (or: docker compose build)

# The parcel viewer's page (web/viewer), bundled from npm packages with esbuild.
FROM node:20-bookworm-slim AS viewer
WORKDIR /viewer
COPY web/viewer/package.json web/viewer/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/viewer/build.mjs ./
COPY web/viewer/src ./src
RUN npm run build

FROM apache/airflow:3.3.2-python3.11

USER root
# gdal-bin: ogr2ogr (parcel import); libgdal-dev + g++: build the GDAL Python bindings;
# postgresql-client: pg_dump for the maintenance backup.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gdal-bin libgdal-dev postgresql-client g++ \
 && apt-get autoremove -yqq --purge \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /opt/airflow/numba-cache \
 && chown airflow:0 /opt/airflow/numba-cache \
 && chmod 2775 /opt/airflow/numba-cache
USER airflow

COPY requirements.txt /requirements.txt
RUN pip install --no-cache-dir -r /requirements.txt
# The GDAL bindings must match the system GDAL and be built after numpy (osgeo.gdal_array),
# as `make venv` does.
RUN pip install --no-cache-dir --no-build-isolation "gdal==$(gdal-config --version)" \
 && python -c "from osgeo import gdal_array; import rasterio, numba"

ENV NUMBA_CACHE_DIR=/opt/airflow/numba-cache

# The viewer's built page, outside the project directory (the compose file mounts a checkout
# there, which need not hold a build); plugins/cbm_viewer.py serves CBM_VIEWER_DIST.
COPY --from=viewer --chown=airflow:0 /viewer/dist /opt/airflow/viewer-dist
ENV CBM_VIEWER_DIST=/opt/airflow/viewer-dist

# The project is installed as a package (the `cbm` command, cbm_ops with its SQL files),
# editable at /opt/airflow/project: docker-compose.yaml mounts the checkout at the same
# path, so the mounted code is what runs.
COPY --chown=airflow:0 . /opt/airflow/project
RUN pip install --no-cache-dir --no-deps -e /opt/airflow/project \
 && python -c "import cbm_ops.db, cbm_ops.config" && cbm --help >/dev/null
