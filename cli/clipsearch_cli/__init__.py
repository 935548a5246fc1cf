"""`clipsearch`: the command line for people and scripts that drop query images and read outcomes.

It reuses the function's own code (validation, naming, the Avro JSON codec) so that it refuses
locally exactly what the function would refuse, and finds outcomes where the function puts them.
"""
