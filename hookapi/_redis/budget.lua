-- The budget: requests that may start now, as a string ("inf" when nothing limits it).
--
-- ARGV: the common five.
expire()
local b = budget(in_flight())
save()
if b >= 1e300 then return 'inf' end
return string.format('%.17g', b)
