from splade.cli import main

main()
