"""`python -m dfscan`: the same as the `dfscan` console script."""

from dfscan.scanner.launch import main

main()
