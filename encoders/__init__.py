"""Text -> vectors: sparse (CSR) encoders behind one protocol, plus dense and multivector."""
