package console

func init() { bcryptCost = 4 } // the least bcrypt allows: the tests hash often
