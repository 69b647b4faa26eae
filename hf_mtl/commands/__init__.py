"""Sub-commands of the `hf-mtl` CLI; see `hf_mtl.cli`."""
