from syntera.cli import main

main()
