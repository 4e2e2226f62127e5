-- End reservations without taking one: what a process ended since its last call, sent on its
-- own when no reservation follows soon (or before reading the budget, or on closing).
--
-- ARGV after the common five: the reservations it ends, each as `end_one` reads it.
expire()
end_all(6)
save()
return 1
