"""Building blocks of the model families, one concept per file: attention, encoder blocks, pooling,
positions, tokenizers, the conv trunk, the whitening init and the outputs."""
