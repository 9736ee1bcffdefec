"""The orchestrators, outside the contract package: the `bert14` command line (cli.py) and the build
chain that runs export -> optimize -> quantize -> check into one artifact (build.py). They import every
stage; no stage imports them."""
