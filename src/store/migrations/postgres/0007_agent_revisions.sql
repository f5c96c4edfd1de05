-- Cards written before revisions existed get one now: a directory restored from its snapshot
-- would otherwise reload every such card at every start-up. Random and odd, so never zero.
UPDATE agents SET revision = (floor(random() * 9.0e18)::bigint | 1) WHERE revision IS NULL;
