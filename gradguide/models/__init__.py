"""Model architectures that live in the core: RRDBNet (the SPSR trunk), with its layouts."""
