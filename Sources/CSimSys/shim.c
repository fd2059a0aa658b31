#include "CSimSys.h"
