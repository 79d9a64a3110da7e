(?i)dear\s+(?:my )?%{T}[,.]|x
dear my friend, x
