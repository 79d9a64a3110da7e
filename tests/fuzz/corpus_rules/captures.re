^https?://.{4,64}\#%{T}
see http://x.example/p#V@X.EXAMPLE and (?:a|b)
