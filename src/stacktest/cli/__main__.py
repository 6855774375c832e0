from stacktest.cli import main

main()
