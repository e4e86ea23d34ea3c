"""dfscan audit: metadata shortcuts (resolution, codec, leading silence...) in a labelled deepfake set."""
