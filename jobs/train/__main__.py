from jobs.train.run import main

main()
