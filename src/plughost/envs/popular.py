"""About 200 of the most-downloaded distributions on PyPI (PEP 503 normalised names): the
names a look-alike dependency (``requets``, ``numpyy``) imitates (:mod:`.policy`)."""

from __future__ import annotations

_NAMES = """
    boto3 botocore urllib3 requests setuptools certifi charset-normalizer idna typing-extensions
    python-dateutil s3transfer packaging six aiobotocore numpy pyyaml s3fs fsspec pip
    cryptography grpcio-status cffi pycparser pandas google-api-core pydantic protobuf attrs
    jmespath rsa pyasn1 importlib-metadata zipp wheel click platformdirs pytz jinja2 markupsafe
    pydantic-core colorama awscli filelock cachetools pluggy virtualenv tomli pyjwt pytest
    wrapt googleapis-common-protos google-auth jsonschema pyasn1-modules annotated-types
    sqlalchemy aiohttp yarl multidict frozenlist aiosignal async-timeout pyarrow docutils
    psutil iniconfig exceptiongroup pyparsing requests-oauthlib oauthlib scipy tomlkit
    grpcio soupsieve beautifulsoup4 pillow decorator isodate werkzeug greenlet httpx httpcore
    h11 anyio sniffio distlib pygments rich markdown-it-py mdurl openpyxl et-xmlfile
    more-itertools tqdm lxml requests-toolbelt websocket-client coverage flask itsdangerous
    blinker gitpython gitdb smmap tzdata deprecated pyopenssl regex proto-plus fastapi
    starlette uvicorn google-cloud-storage google-cloud-core google-resumable-media
    google-crc32c msgpack azure-core azure-storage-blob msal portalocker matplotlib
    kiwisolver cycler fonttools contourpy scikit-learn joblib threadpoolctl networkx sympy
    mpmath torch torchvision transformers tokenizers huggingface-hub safetensors datasets
    dill multiprocess xxhash keras tensorflow tensorboard absl-py h5py termcolor opt-einsum
    gast astunparse flatbuffers ml-dtypes sentencepiece nltk openai tiktoken langchain
    langchain-core langsmith orjson redis celery kombu billiard vine amqp pymysql psycopg2
    psycopg2-binary mysql-connector-python paramiko bcrypt pynacl invoke fabric docker
    kubernetes websockets tenacity backoff retry pexpect ptyprocess ipython traitlets jedi
    parso prompt-toolkit wcwidth matplotlib-inline asttokens executing pure-eval stack-data
    ipykernel jupyter-client jupyter-core tornado pyzmq nest-asyncio notebook nbformat
    nbconvert mistune bleach webencodings tinycss2 pandocfilters defusedxml black mypy
    mypy-extensions pathspec isort flake8 pycodestyle pyflakes mccabe pylint astroid ruff
    pre-commit identify nodeenv cfgv tox sortedcontainers hypothesis mock freezegun
    python-dotenv toml typer shellingham uvloop httptools watchfiles gunicorn marshmallow
    arrow pendulum babel simplejson ujson chardet xlrd xlsxwriter tabulate sqlparse
    alembic mako django djangorestframework asgiref pymongo dnspython elasticsearch
    opencv-python imageio scikit-image numba llvmlite polars duckdb onnx onnxruntime
    accelerate einops timm spacy thinc gensim statsmodels patsy seaborn plotly dash
    streamlit gradio pyspark py4j selenium playwright scrapy twisted zope-interface
"""
POPULAR_PACKAGES = frozenset(_NAMES.split())
