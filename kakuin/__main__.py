from kakuin.cli import main

main()
