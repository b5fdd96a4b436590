"""Trainers for the encoders (apart from ``encoders/``, which they build on): CSR / CSRv2
autoencoders (``csr``), the inference-free document model (``inference_free``) and the
multivector token projection (``multivector``). Each writes a model directory with an
``lsr-model.json`` registry entry (encoders/registry.py), so a collection can name what was
trained once the directory is in the models cache. ``lsr train`` runs them (``training.cli``)."""
