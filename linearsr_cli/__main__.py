from linearsr_cli.cli import main

main()
