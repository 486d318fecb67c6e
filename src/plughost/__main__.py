from plughost.cli.entry import main

main()
