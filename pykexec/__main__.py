from pykexec.cli import main

main()
