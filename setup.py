from setuptools import find_packages, setup

setup(
    name="neuroprune-fairseq",
    version="0.1.0",
    description="NeuroPrune (neuro-inspired topological sparse training) and head-pruning baselines as a fairseq plugin",
    packages=find_packages(include=["neuroprune", "neuroprune.*", "neuroprune_fairseq", "neuroprune_fairseq.*"]),
    python_requires=">=3.10",
    install_requires=[
        "fairseq-fixed==0.12.3.1",
        "torch>=2.0",
        "sacrebleu>=2.0",
        "sentencepiece",
        "numpy",
    ],
    extras_require={"test": ["pytest"], "plots": ["matplotlib"], "iwslt": ["sacremoses"]},
)
