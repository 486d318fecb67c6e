from plughost.cli import main

main()
