"""What goes into a network: protocols and their pairs, landmarks, alignment to a crop template, image
decoding and the crop cache, degradations, insightface ``.bin`` and RecordIO packs, synthetic data, face
detection and benchmarks made from a folder of identities. Nothing here knows about networks or runs."""
