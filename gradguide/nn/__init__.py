"""Building blocks: RRDB, upsamplers, gradient branch, fusion."""
