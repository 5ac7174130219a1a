"""The purgatory: built from arch/<arch>/purgatory with gcc, loaded like a linker would."""
