from auxol.cli import main

main()
